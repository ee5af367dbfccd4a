"""Every head at once: attention patterns of several layers as small multiples, and a BertViz-style view of
where every head of one layer looks from a chosen token (GQA groups share a colour)."""

import streamlit as st

from common import decode_steps, header, lang, layer_count, require_trace
from tracer.figures.interp import head_view, heads_grid, position_labels
from tracer.i18n import t

header("All heads", "所有注意力頭")
trace = require_trace()
layers = layer_count(trace)
steps = [0] + decode_steps(trace)
step = st.selectbox(t("interp.step", lang()), steps,
                    format_func=lambda s: t("interp.prefill", lang()) if s == 0 else f"decode {s}")
prefix = "" if step == 0 else f"decode.{step}."
have = [i for i in range(layers) if f"{prefix}layers.{i}.attn.probs" in trace]
if not have:
    st.warning(t("interp.no_probs", lang()))
    st.stop()
per_page = 6
first = st.number_input(t("interp.first_layer", lang(), count=per_page), 0, layers - 1, 0)
shown = [i for i in have if first <= i < first + per_page]
if shown:
    st.plotly_chart(heads_grid(trace, shown, prefix, lang()), key="grid")
st.subheader(t("interp.head_view_heading", lang()))
st.caption(t("interp.head_view_help", lang()))
left, right = st.columns(2)
layer = left.selectbox(t("interp.layer", lang()), have)
tokens = position_labels(trace, prefix)
query = right.selectbox(t("interp.position", lang()), list(range(len(tokens))), index=len(tokens) - 1,
                        format_func=lambda p: f"{p}: {tokens[p]!r}")
st.plotly_chart(head_view(trace, int(layer), int(query), prefix, lang()), key="head_view")
