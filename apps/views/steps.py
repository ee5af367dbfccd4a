"""Previous / next through every record in computation order, the way seed 004 walks through its matrices."""

import numpy as np
import streamlit as st

import guard
from common import header, lang, matrix_table, require_trace, t
from tracer.figures import labels_for, record_heatmap

header("Step walker", "逐步走查")
trace = require_trace()
names = trace.names
if "record" in st.query_params and st.query_params["record"] in names and "step_from_url" not in st.session_state:
    st.session_state.step = names.index(st.query_params["record"])
    st.session_state.step_from_url = True
step = min(int(st.session_state.get("step", 0)), len(names) - 1)
prev_col, pick_col, next_col = st.columns([1, 6, 1])
if prev_col.button(t("previous"), disabled=step == 0):
    step -= 1
if next_col.button(t("next_step"), disabled=step == len(names) - 1):
    step += 1
step = pick_col.selectbox(t("record"), range(len(names)), index=step, format_func=lambda k: f"{k + 1}. {names[k]}")
st.session_state.step = step

name = names[step]
info = trace.info[name]
value = np.asarray(trace[name])
st.subheader(name)
st.latex(guard.formula(info))  # the schema's own LaTeX for the record's op, never the file's text
st.caption(guard.plain(f"{t('shape')}: {list(value.shape)} = {info['schema_shape']} · {info['dtype']}")
           + (f" · {t('derived')}" if info.get("derived") else ""))
if info["inputs"]:
    st.caption(f"{t('inputs')}: " + guard.plain(", ".join(info["inputs"])))
st.info(guard.plain(info["zh"] if lang() == "zh" else info["en"]))
labels = labels_for(trace, name)
matrix = value
if value.ndim == 3:
    head = st.slider(t("head"), 0, value.shape[0] - 1, 0) if value.shape[0] > 1 else 0
    matrix, labels = value[head], labels[1:]
if matrix.ndim <= 2 and all(d <= 16 for d in matrix.shape):
    rows = labels[0] if matrix.ndim == 2 else None
    cols = labels[1] if matrix.ndim == 2 else labels[0]
    matrix_table(matrix, rows, cols)
else:
    st.plotly_chart(record_heatmap(trace, name, head if value.ndim == 3 else 0), key=f"heat-{name}")
