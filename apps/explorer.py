"""qwen3-tracer explorer: walk a Qwen3 forward pass step by step (``tracer app [TRACE.npz]``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pages import common

import streamlit as st  # noqa: E402

import guard  # noqa: E402

st.set_page_config(page_title="qwen3-tracer", layout="wide")
guard.gate()  # the class password, before anything else
PAGES = [
    st.Page("views/run.py", title="Run / open", default=True),
    st.Page("views/pipeline.py", title="Pipeline map"),
    st.Page("views/steps.py", title="Step walker"),
    st.Page("views/attention.py", title="Attention"),
    st.Page("views/rope.py", title="RoPE"),
    st.Page("views/moe.py", title="MoE routing"),
    st.Page("views/sampling.py", title="Logits & sampling"),
    st.Page("views/tokens.py", title="Tokens & chat template"),
    st.Page("views/compare.py", title="Compare"),
    st.Page("views/lens.py", title="Logit lens & attribution"),
    st.Page("views/heads.py", title="All heads"),
    st.Page("views/prompts.py", title="Compare prompts"),
    st.Page("views/whatif.py", title="What if"),
    st.Page("views/quant.py", title="Quantization drift"),
    st.Page("views/long_context.py", title="Long context"),
    st.Page("views/training.py", title="Training"),
    st.Page("views/vision.py", title="Vision (Qwen3-VL)"),
]
with guard.boundary():  # any error: a one-line message box, never a traceback or a server path
    st.navigation(PAGES).run()
