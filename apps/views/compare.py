"""Two traces side by side: per-record error, the first divergence, the error's growth across layers, and the
difference matrix of any record."""

import numpy as np
import streamlit as st

import guard
from common import header, lang, read_trace, read_upload, require_trace, show_notes, t
from tracer import Message, TracerError
from tracer.figures.forward import compare_figure, difference_heatmap, error_growth_figure, labels_for
from tracer.traces.compare import compare_traces, first_divergence

header("nav_compare")
a = require_trace()
show_notes(a, "compare")
uploaded = st.file_uploader(t("second_trace"), type=["npz"], key="compare_upload",
                            max_upload_size=guard.settings().max_upload_mb)
typed = st.text_input(t("or_path"), key="compare_path")
if uploaded is None and not typed.strip():
    st.info(t("compare_hint"))
    st.stop()
try:
    b = read_upload(uploaded) if uploaded is not None else read_trace(typed.strip())
except TracerError as exc:
    st.error(guard.error_text(exc))
    st.stop()
rows = compare_traces(a, b)
first = first_divergence(rows)
counts = {v: sum(r.verdict == v for r in rows) for v in ("OK", "DIFF", "SHAPE", "NONFINITE", "MISSING")}
st.write(", ".join(f"{Message(f'compare.verdict_{v}').text(lang())} {n}" for v, n in counts.items()))
if first:
    st.markdown(t("first_divergence", name=first.name))
else:
    st.success(t("agree"))
st.plotly_chart(compare_figure(rows, lang()), key="errors")
st.plotly_chart(error_growth_figure(rows, lang()), key="growth")
st.dataframe([{t("col_record"): r.name, t("col_verdict"): r.verdict_text(lang()), t("col_max_abs"): r.max_abs,
               t("col_max_rel"): r.max_rel, t("col_note"): r.note_text(lang())} for r in rows], hide_index=True)
common = [r.name for r in rows if r.verdict not in ("MISSING", "SHAPE")]
name = st.selectbox(t("record"), common, index=common.index(first.name) if first and first.name in common else 0)
x, y = np.asarray(a[name]), np.asarray(b[name])
labels = labels_for(a, name)
head = 0
if x.ndim == 3:
    head = st.slider(t("head"), 0, x.shape[0] - 1, 0, key="cmp-head") if x.shape[0] > 1 else 0
    x, y, labels = x[head], y[head], labels[1:]
if x.ndim == 0:
    x, y = x.reshape(1, 1), y.reshape(1, 1)
st.caption(guard.plain(t("diff_caption", a=f"{a.label} ({a.meta['backend']}, {a.meta['dtype']})",
                         b=f"{b.label} ({b.meta['backend']}, {b.meta['dtype']})")))
st.plotly_chart(difference_heatmap(x, y, labels[0] if x.ndim == 2 else None, labels[-1], name, lang()), key="diff")
