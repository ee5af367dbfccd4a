"""Logit lens (layers × positions), the residual stream of one position, and direct logit attribution."""

import streamlit as st

from common import decode_steps, header, lang, require_trace
from tracer.i18n import t
from tracer.figures.interp import (attribution_figure, has_attribution, has_lens, has_stream, lens_grid,
                                   layer_attribution_figure, position_labels, stream_figure)

header("Logit lens & attribution", "Logit lens 與歸因")
trace = require_trace()
steps = [0] + decode_steps(trace)
step = st.selectbox(t("interp.step", lang()), steps,
                    format_func=lambda s: t("interp.prefill", lang()) if s == 0 else f"decode {s}", key="lens_step")
prefix = "" if step == 0 else f"decode.{step}."
st.caption(t("interp.lens_help", lang()))
if not has_lens(trace, prefix):
    st.warning(t("interp.no_lens", lang()))
    st.stop()
st.plotly_chart(lens_grid(trace, prefix, lang()), key="lens")
tokens = position_labels(trace, prefix)
position = st.selectbox(t("interp.position", lang()), list(range(len(tokens))), index=len(tokens) - 1,
                        format_func=lambda p: f"{p}: {tokens[p]!r}")
if has_stream(trace, prefix):
    st.subheader(t("interp.stream_heading", lang()))
    st.plotly_chart(stream_figure(trace, int(position), prefix, lang()), key="stream")
if has_attribution(trace, prefix):
    st.subheader(t("interp.attrib_heading", lang()))
    st.caption(t("interp.attrib_help", lang()))
    left, right = st.columns(2)
    left.plotly_chart(attribution_figure(trace, int(position), prefix, lang()), key="attrib")
    right.plotly_chart(layer_attribution_figure(trace, prefix, lang()), key="attrib_layers")
else:
    st.info(t("interp.no_attrib", lang()))
