"""Rotation angle per dimension pair and position, q/k before and after rotation, and RoPE's relative-position
dependence: the score of one fixed q,k pair as the distance between them grows."""

import streamlit as st

from common import header, lang, layer_count, require_trace, show_notes, t
from tracer.figures.forward import labels_for, rope_angle_figure, rope_distance_figure, rope_rotation_figure

header("nav_rope")
trace = require_trace()
show_notes(trace, "rope")
cfg = trace.meta["config"]
st.plotly_chart(rope_angle_figure(trace, lang=lang()), key="angles")
cols = st.columns(3)
layer = int(cols[0].number_input(t("layer"), 0, layer_count(trace) - 1, 0))
head = int(cols[1].number_input(t("head"), 0, cfg["num_attention_heads"] - 1, 0))
kind = cols[2].radio(t("q_or_k"), ["q", "k"], horizontal=True)
if f"layers.{layer}.attn.{kind}_rope" not in trace or f"layers.{layer}.attn.q_norm" not in trace:
    st.warning(t("not_captured"))
    st.stop()
kv_head = head // (cfg["num_attention_heads"] // cfg["num_key_value_heads"])
st.plotly_chart(rope_rotation_figure(trace, layer, head if kind == "q" else kv_head, kind, lang=lang()),
                key="rotation")
tokens = labels_for(trace, f"layers.{layer}.attn.q_norm")[1]
a, b, c = st.columns(3)
query = a.selectbox(t("rope_query"), range(len(tokens)), index=len(tokens) - 1, format_func=lambda k: tokens[k])
key = b.selectbox(t("rope_key"), range(len(tokens)), index=0, format_func=lambda k: tokens[k])
distance = int(c.number_input(t("rope_max_distance"), 8, 4096, 64 if cfg.get("rope_degrees_per_position") else 256))
st.plotly_chart(rope_distance_figure(trace, layer, head, query, key, distance, lang()), key="distance")
st.caption(t("rope_distance_caption"))
st.caption(t("rope_caption"))
