"""The data flow of the whole pass, drawn from the trace's inputs metadata, in collapsible groups of layers;
click a node to open it in the step walker."""

import streamlit as st

from common import header, lang, layer_count, require_trace, show_notes, t
from tracer.figures.forward import pipeline_figure

GROUP = 8

header("nav_pipeline")
trace = require_trace()
show_notes(trace, "pipeline")
layers = layer_count(trace)
present = sorted({int(n.split(".")[1]) for n in trace.names if n.startswith("layers.")})


def chart(fig, key: str) -> str | None:
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key=key)
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", [])
    return points[0].get("customdata") if points else None


st.caption(t("pipeline_caption", layers=layers))
chosen = chart(pipeline_figure(trace, [], lang()), "pipeline-outer")
groups = [present[k:k + GROUP] for k in range(0, len(present), GROUP)]
for g, group in enumerate(groups):
    with st.expander(t("layer_group", first=group[0], last=group[-1]), expanded=g == 0):
        chosen = chart(pipeline_figure(trace, group, lang()), f"pipeline-{g}") or chosen
if any(n.startswith("vision.") for n in trace.names):  # Qwen3-VL: the vision tower feeds the embedding
    with st.expander(t("whole_pass")):
        chosen = chart(pipeline_figure(trace, None, lang()), "pipeline-whole") or chosen
picked = st.selectbox(t("open_record"), trace.names, index=None, placeholder=t("record_name"), key="pipeline_record")
target = chosen or picked
if target:
    st.session_state.step = trace.names.index(target)
    st.switch_page("views/steps.py")
