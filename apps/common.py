"""State shared by the explorer's pages: the open trace, the language, and the labels of the interface.

Pages read traces and draw figures from ``tracer.figures``; they never recompute model math.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import guard
import numpy as np
import streamlit as st

from tracer import TracerError
from tracer.run import encode_prompt, load_model, run_trace
from tracer.safefiles import escape_controls
from tracer.tracefile import Trace, load_trace

TRACE_ENV = "QWEN3_TRACER_TRACE"

TEXT = {
    "language": ("Language", "語言"),
    "trace": ("Trace", "追蹤檔"),
    "model": ("Model", "模型"),
    "tokens": ("Tokens", "Tokens"),
    "next": ("Next token", "下一個 token"),
    "no_trace": ("No trace is open.", "尚未開啟追蹤檔。"),
    "record": ("Record", "紀錄"),
    "previous": ("◀ Previous", "◀ 上一步"),
    "next_step": ("Next ▶", "下一步 ▶"),
    "shape": ("Shape", "形狀"),
    "inputs": ("Computed from", "輸入"),
    "layer": ("Layer", "層"),
    "head": ("Head", "Head"),
    "step": ("Step", "步驟"),
    "explanation": ("What it is", "說明"),
    "derived": ("derived: recomputed from captured tensors", "derived:由擷取的張量重新計算"),
    "no_moe": ("This trace has no Mixture-of-Experts layer; open a toy-moe or Qwen3-MoE trace.",
               "此追蹤檔沒有 MoE 層;請開啟 toy-moe 或 Qwen3-MoE 的追蹤檔。"),
}


def lang() -> str:
    return st.session_state.get("lang", "en")


def t(key: str) -> str:
    """An interface label in the chosen language."""
    en, zh = TEXT[key]
    return zh if lang() == "zh" else en


@st.cache_resource(show_spinner=False)
def default_trace() -> Trace:
    """The toy dense example of seed 004, traced once per server: the first screen is already meaningful."""
    model = load_model("toy-dense")
    return run_trace(model, encode_prompt(model, "明天交報告"), prompt="明天交報告")


@st.cache_resource(show_spinner=False, max_entries=8)
def _open(path: str, mtime: float, budget: int) -> Trace:
    return load_trace(path, max_bytes=budget)


def _read_any(path: str) -> Trace:
    return _open(path, Path(path).stat().st_mtime if Path(path).exists() else 0.0, guard.settings().budget)


def read_trace(path: str) -> Trace:
    """A trace file of the traces folder (any other path is refused), cached per server until the file changes;
    a TracerError without server paths when it cannot be read."""
    try:
        return _read_any(str(guard.trace_path(path)))
    except TracerError as exc:
        raise TracerError(guard.scrub(str(exc))) from None


def read_upload(uploaded: Any) -> Trace:
    """An uploaded trace, read from its bytes in memory (nothing is written on the server)."""
    if uploaded.size > guard.upload_limit_bytes():
        raise TracerError(f"{guard.plain(uploaded.name)} is larger than the upload limit")
    return load_trace(io.BytesIO(uploaded.getvalue()), name=uploaded.name, max_bytes=guard.settings().budget)


def current_trace() -> Trace | None:
    """This session's open trace; a trace that cannot be read shows its one-line error and the app goes on."""
    if "trace" not in st.session_state:
        path = os.environ.get(TRACE_ENV)
        try:
            st.session_state.trace = _read_any(path) if path else default_trace()  # the teacher's own file
        except TracerError as exc:
            st.error(guard.scrub(str(exc)))
            return None
    return st.session_state.trace


def open_trace(trace: Trace) -> None:
    """Make ``trace`` this session's open trace."""
    st.session_state.trace = trace
    st.session_state.step = 0


def open_path(path: str) -> bool:
    """Make the trace file at ``path`` the open trace if it can be read; show why not otherwise."""
    try:
        open_trace(read_trace(path))
    except TracerError as exc:
        st.error(guard.scrub(str(exc)))
        return False
    return True


def require_trace() -> Trace:
    trace = current_trace()
    if trace is None:
        st.info(t("no_trace"))
        st.stop()
    return trace


def sidebar() -> None:
    """Language switch and a summary of the open trace, on every page."""
    with st.sidebar:
        choice = st.radio(t("language"), ["en", "zh"], index=0 if lang() == "en" else 1, horizontal=True,
                          key="lang_choice", format_func=lambda code: "English" if code == "en" else "中文")
        st.session_state.lang = choice  # a plain key: it survives pages that do not draw the switch
        trace = current_trace()
        if trace is not None:
            m = trace.meta
            st.caption(guard.plain(f"{t('trace')}: {trace.label} · {m['model']} · {m['backend']} · {m['dtype']}"))


def header(en: str, zh: str) -> None:
    """The sidebar (language switch, open trace) and the page title, at the top of every page."""
    sidebar()
    st.title(zh if lang() == "zh" else en)


def summary(trace: Trace) -> None:
    """Model, tokens and chosen next token of a trace."""
    m = trace.meta
    cols = st.columns(3)
    cols[0].metric(t("model"), m["model"])
    cols[1].metric(t("tokens"), len(m["token_ids"]))
    new = m.get("generated_labels") or []
    cols[2].metric(t("next"), f"{m['generated_ids'][0]} {new[0]!r}" if new else "—")
    st.text(" ".join(f"[{escape_controls(label.strip()) or repr(label)}]" for label in m["token_labels"][:256]))


def layer_count(trace: Trace) -> int:
    return int(trace.meta["config"]["num_hidden_layers"])


def decode_steps(trace: Trace) -> list[int]:
    return sorted({int(n.split(".")[1]) for n in trace.names if n.startswith("decode.") and n.endswith(".tokens")})


def matrix_table(value: np.ndarray, rows: list[str] | None, cols: list[str] | None, decimals: int = 3) -> None:
    """A small matrix as a static table (its numbers are in the page), with row and column labels."""
    import pandas as pd

    m = np.asarray(value)
    if m.ndim == 0:
        st.code(str(m.item()))
        return
    if m.ndim == 1:
        m, rows = m[None, :], [""]
    shown = np.where(m < -1e30, -np.inf, m) if np.issubdtype(m.dtype, np.floating) else m
    frame = pd.DataFrame(shown, index=rows if rows and len(rows) == m.shape[0] else None,
                         columns=cols if cols and len(cols) == m.shape[1] else None)
    if np.issubdtype(m.dtype, np.floating):
        frame = frame.map(lambda v: "−∞" if v == -np.inf else f"{v:.{decimals}f}")
    st.table(frame)
