"""Per layer and head: scores -> masked scores -> probabilities, the causal mask, and the GQA head map."""

import streamlit as st

from common import decode_steps, header, layer_count, require_trace, t
from tracer.figures import attention_figure, gqa_figure, record_heatmap

header("Attention", "注意力")
trace = require_trace()
cfg = trace.meta["config"]
cols = st.columns(3)
layer = cols[0].number_input(t("layer"), 0, layer_count(trace) - 1, 0)
head = cols[1].number_input(t("head"), 0, cfg["num_attention_heads"] - 1, 0)
steps = [0] + decode_steps(trace)
step = cols[2].selectbox(t("step"), steps, format_func=lambda s: "prefill" if s == 0 else f"decode {s}")
prefix = "" if step == 0 else f"decode.{step}."
if f"{prefix}layers.{layer}.attn.probs" not in trace:
    st.warning("This trace did not capture the attention records of that layer (--capture).")
    st.stop()
st.plotly_chart(attention_figure(trace, int(layer), int(head), prefix), key="attn")
left, right = st.columns(2)
left.plotly_chart(record_heatmap(trace, f"{prefix}layers.{layer}.attn.mask", title="causal mask"), key="mask")
right.plotly_chart(gqa_figure(cfg["num_attention_heads"], cfg["num_key_value_heads"]), key="gqa")
