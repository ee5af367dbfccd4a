"""Per layer and head: scores -> masked scores -> probabilities, the causal mask, the GQA head map; a decode
step's new query against every cached key."""

import numpy as np
import streamlit as st

from common import decode_steps, header, lang, layer_count, require_trace, show_notes, t
from tracer.figures.forward import attention_figure, decode_attention_figure, gqa_figure, labels_for, mask_figure

header("nav_attention")
trace = require_trace()
show_notes(trace, "attention")
cfg = trace.meta["config"]
cols = st.columns(3)
layer = int(cols[0].number_input(t("layer"), 0, layer_count(trace) - 1, 0, key="attn_layer"))
head = int(cols[1].number_input(t("head"), 0, cfg["num_attention_heads"] - 1, 0, key="attn_head"))
steps = [0] + decode_steps(trace)
step = cols[2].selectbox(t("step"), steps, format_func=lambda s: t("prefill") if s == 0 else t("decode_n", s=s),
                          key="attn_step")
prefix = "" if step == 0 else f"decode.{step}."
n = f"{prefix}layers.{layer}.attn"
if f"{n}.probs" not in trace:
    st.warning(t("not_captured"))
    st.stop()
if step == 0:
    st.plotly_chart(attention_figure(trace, layer, head, prefix, lang()), key="attn")
else:
    st.caption(t("decode_caption", keys=np.shape(trace[f"{n}.probs"])[-1]))
    st.plotly_chart(decode_attention_figure(trace, step, layer, head, lang()), key="attn-decode")
left, right = st.columns(2)
labels = labels_for(trace, f"{n}.mask")
left.plotly_chart(mask_figure(trace[f"{n}.mask"], labels[0], labels[1], lang()), key="mask")
right.plotly_chart(gqa_figure(cfg["num_attention_heads"], cfg["num_key_value_heads"], lang()), key="gqa")
