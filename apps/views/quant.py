"""Quantization drift: quantized runs (Q8_0, Q4_K …) against their reference, layer by layer."""

import streamlit as st

import guard
from common import header, lang, read_trace, read_upload, require_trace
from tracer import TracerError
from tracer.i18n import translator
from tracer.sources.drift import drift_figure, drift_table, layer_drift, quant_rows, quant_table

tr = translator(lang())
header("nav_quant")
reference = require_trace()
st.caption(tr("sources.app_reference", name=reference.label))
uploads = st.file_uploader(tr("sources.app_upload"), type=["npz"], accept_multiple_files=True, key="quant_uploads")
typed = st.text_input(tr("sources.app_paths"), key="quant_paths")
if not uploads and not typed.strip():
    st.info(tr("sources.app_recipe"))
    st.code("tracer quantize CKPT --type Q8_0 --out q8.gguf\ntracer quantize CKPT --type Q4_K --out q4k.gguf\n"
            "tracer trace CKPT --prompt P --out ref.npz\n"
            "tracer trace q8.gguf --prompt P --reference CKPT --out q8.npz\n"
            "tracer trace q4k.gguf --prompt P --reference CKPT --out q4k.npz", language="bash")
    st.stop()
others = []
try:
    others += [read_upload(u) for u in uploads or []]
    others += [read_trace(p.strip()) for p in typed.split(",") if p.strip()]
except TracerError as exc:
    st.error(tr("sources.app_cannot_open", reason=guard.error_text(exc)))
    st.stop()
curves = {trace.label: layer_drift(reference, trace) for trace in others}
if not any(curves.values()):
    st.warning(tr("sources.app_nothing_common"))
    st.stop()
st.plotly_chart(drift_figure(curves, lang()), key="quant-drift")
st.subheader(tr("sources.app_drift_table"))
st.dataframe(drift_table(curves, lang()), hide_index=True)
for trace in others:
    rows = quant_rows(trace)
    if rows:
        st.subheader(tr("sources.app_weights", name=trace.label))
        st.dataframe(quant_table(rows, lang()), hide_index=True)
