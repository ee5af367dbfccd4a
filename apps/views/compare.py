"""Two traces side by side: per-record error, the first divergence, and both matrices of one record."""

import streamlit as st

import guard
from common import header, matrix_table, read_trace, read_upload, require_trace
from tracer import TracerError
from tracer.compare import compare_traces, first_divergence
from tracer.figures import compare_figure, labels_for, record_heatmap

header("Compare", "比較")
a = require_trace()
uploaded = st.file_uploader("Second trace (.npz)", type=["npz"], key="compare_upload",
                            max_upload_size=guard.settings().max_upload_mb)
typed = st.text_input("…or its name in the traces folder", key="compare_path")
if uploaded is None and not typed.strip():
    st.info("Open a second trace, e.g. the same run with --backend torch, --dtype bfloat16 or --round 3.")
    st.stop()
try:
    b = read_upload(uploaded) if uploaded is not None else read_trace(typed.strip())
except TracerError as exc:
    st.error(guard.scrub(str(exc)))
    st.stop()
rows = compare_traces(a, b)
first = first_divergence(rows)
counts = {v: sum(r.verdict == v for r in rows) for v in ("OK", "DIFF", "SHAPE", "MISSING")}
st.write(", ".join(f"{n} {v}" for v, n in counts.items()))
st.write(f"first divergence: **{first.name}**" if first else "The traces agree on every common record.")
st.plotly_chart(compare_figure(rows), key="errors")
st.dataframe([r.as_dict() for r in rows])
common = [r.name for r in rows if r.verdict != "MISSING"]
name = st.selectbox("Record", common, index=common.index(first.name) if first else 0)
left, right = st.columns(2)
for col, trace in ((left, a), (right, b)):
    with col:
        st.caption(guard.plain(f"{trace.label} ({trace.meta['backend']}, {trace.meta['dtype']})"))
        value = trace[name]
        if value.ndim <= 2 and all(d <= 16 for d in value.shape):
            labels = labels_for(trace, name)
            matrix_table(value, labels[0] if value.ndim == 2 else None, labels[-1])
        else:
            st.plotly_chart(record_heatmap(trace, name), key=f"cmp-{id(trace)}")
