"""qwen3-tracer explorer: walk a Qwen3 forward pass step by step (``tracer app [TRACE.npz]``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pages import common

import streamlit as st  # noqa: E402

import guard  # noqa: E402
from common import nav_title  # noqa: E402

st.set_page_config(page_title="qwen3-tracer", layout="wide")
guard.gate()  # the class password, before anything else
# a new page: st.Page("views/<name>.py", title=nav_title("<name>")) and the key app.nav_<name> in the catalogs
PAGES = [
    st.Page("views/run.py", title=nav_title("run"), default=True),
    st.Page("views/pipeline.py", title=nav_title("pipeline")),
    st.Page("views/steps.py", title=nav_title("steps")),
    st.Page("views/attention.py", title=nav_title("attention")),
    st.Page("views/rope.py", title=nav_title("rope")),
    st.Page("views/moe.py", title=nav_title("moe")),
    st.Page("views/sampling.py", title=nav_title("sampling")),
    st.Page("views/tokens.py", title=nav_title("tokens")),
    st.Page("views/compare.py", title=nav_title("compare")),
    st.Page("views/lens.py", title=nav_title("lens", "Logit lens & attribution")),
    st.Page("views/heads.py", title=nav_title("heads", "All heads")),
    st.Page("views/prompts.py", title=nav_title("prompts", "Compare prompts")),
    st.Page("views/whatif.py", title=nav_title("whatif", "What if")),
    st.Page("views/quant.py", title=nav_title("quant", "Quantization drift")),
    st.Page("views/long_context.py", title=nav_title("long_context", "Long context")),
    st.Page("views/training.py", title=nav_title("training", "Training")),
    st.Page("views/vision.py", title=nav_title("vision", "Vision (Qwen3-VL)")),
]
with guard.boundary():  # any error: a one-line message box, never a traceback or a server path
    st.navigation(PAGES, expanded=True).run()  # every page listed (no "View more")
