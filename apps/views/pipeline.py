"""The data flow of the whole pass, drawn from the trace's inputs metadata; click a node to open it."""

import streamlit as st

from common import header, require_trace
from tracer.figures import pipeline_figure

header("Pipeline map", "流程圖")
trace = require_trace()
event = st.plotly_chart(pipeline_figure(trace), on_select="rerun", selection_mode="points", key="pipeline")
points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
    getattr(getattr(event, "selection", None), "points", [])
chosen = points[0].get("customdata") if points else None
picked = st.selectbox("Open a record in the step walker", trace.names, index=None, placeholder="record name")
target = chosen or picked
if target:
    st.session_state.step = trace.names.index(target)
    st.switch_page("views/steps.py")
