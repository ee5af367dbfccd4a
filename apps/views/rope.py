"""Rotation angle per dimension pair and position, q/k before and after rotation, relative position."""

import streamlit as st

from common import header, lang, layer_count, require_trace, t
from tracer.figures import relative_position_figure, rope_angle_figure, rope_rotation_figure

header("RoPE", "RoPE")
trace = require_trace()
cfg = trace.meta["config"]
st.plotly_chart(rope_angle_figure(trace), key="angles")
cols = st.columns(3)
layer = int(cols[0].number_input(t("layer"), 0, layer_count(trace) - 1, 0))
head = int(cols[1].number_input(t("head"), 0, cfg["num_key_value_heads"] - 1, 0))
kind = cols[2].radio("q / k", ["q", "k"], horizontal=True)
if f"layers.{layer}.attn.{kind}_rope" in trace:
    st.plotly_chart(rope_rotation_figure(trace, layer, head, kind), key="rotation")
    st.plotly_chart(relative_position_figure(trace, layer, head), key="relative")
st.caption("RoPE turns each pair (x[j], x[j+Dh/2]) by φ = position × θ^(−2j/Dh): lengths stay the same, and q·k "
           "depends only on how far apart the two positions are." if lang() == "en" else
           "RoPE 把每對 (x[j], x[j+Dh/2]) 旋轉 φ = 位置 × θ^(−2j/Dh):長度不變,q·k 只取決於兩個位置的距離。")
