"""State shared by the explorer's pages: the open trace, the language, and the labels of the interface.

Pages read traces and draw figures from ``tracer.figures.forward``; they never recompute model math.
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
from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.i18n import LANGS, catalog, normalize
from tracer.i18n import t as translate
from tracer.safety.safefiles import escape_controls
from tracer.teaching.notes import notes_for
from tracer.text.tokentext import TokenText
from tracer.traces.tracefile import Trace, load_trace

TRACE_ENV = "QWEN3_TRACER_TRACE"
LANG_ENV = "QWEN3_TRACER_LANG"
LANG_NAMES = {"en": "English", "zh-Hans": "简体中文", "zh-Hant": "繁體中文"}


def lang() -> str:
    """This session's language: ``en``, ``zh-Hans`` or ``zh-Hant`` (``tracer app --lang``, ``?lang=``, the
    switch in the sidebar)."""
    if "lang" not in st.session_state:
        st.session_state.lang = st.query_params.get("lang") or os.environ.get(LANG_ENV) or "en"
    try:
        return normalize(st.session_state.lang)  # "zh" is zh-Hans
    except TracerError:
        return "en"


def t(key: str, /, **values: Any) -> str:
    """Interface text in this session's language: ``t("record")`` is ``app.record`` of the catalogs; a key
    with a dot names its area (``t("figures.mask_title")``)."""
    return translate(key if "." in key else f"app.{key}", lang(), **values)


def nav_title(page: str, fallback: str | None = None) -> str:
    """A page's title in the navigation: ``app.nav_<page>`` of the catalogs (new pages add that key)."""
    key = f"app.nav_{page}"
    return translate(key, lang()) if key in catalog("en") else (fallback or page)


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
        raise guard.scrubbed(exc) from None


def read_upload(uploaded: Any) -> Trace:
    """An uploaded trace, read from its bytes in memory (nothing is written on the server)."""
    if uploaded.size > guard.upload_limit_bytes():
        raise TracerError.of("app.upload_too_large", name=guard.plain(uploaded.name),
                             limit=guard.settings().max_upload_mb)
    return load_trace(io.BytesIO(uploaded.getvalue()), name=uploaded.name, max_bytes=guard.settings().budget)


def current_trace() -> Trace | None:
    """This session's open trace; a trace that cannot be read shows its one-line error and the app goes on."""
    if "trace" not in st.session_state:
        path = os.environ.get(TRACE_ENV)
        try:
            st.session_state.trace = _read_any(path) if path else default_trace()  # the teacher's own file
        except TracerError as exc:
            st.error(guard.error_text(exc))
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
        st.error(guard.error_text(exc))
        return False
    return True


def require_trace() -> Trace:
    trace = current_trace()
    if trace is None:
        st.info(t("no_trace"))
        st.stop()
    return trace


def _switch_language() -> None:
    st.session_state.lang = st.session_state.lang_choice


def sidebar() -> None:
    """Language switch and a summary of the open trace, on every page."""
    with st.sidebar:
        current = lang()
        st.radio(t("language"), list(LANGS), index=list(LANGS).index(current), key="lang_choice",
                 format_func=LANG_NAMES.get, on_change=_switch_language)
        trace = current_trace()
        if trace is not None:
            m = trace.meta
            st.caption(guard.plain(f"{t('trace')}: {trace.label} · {m['model']} · {m['backend']} · {m['dtype']}"))


def header(title: str, zh: str | None = None, zh_hant: str | None = None) -> None:
    """The sidebar (language switch, open trace) and the page title, at the top of every page.

    ``title`` is a catalog key (``header("nav_attention")``); pages written before the catalogs may still
    pass English and Chinese text (``header("Attention", "注意力")``).
    """
    sidebar()
    key = title if "." in title else f"app.{title}"
    if key not in catalog("en"):  # English text: its catalog key, when some catalog holds it
        key = next((k for k, v in catalog("en").items() if v == title), key)
    if key in catalog("en"):
        st.title(translate(key, lang()))
    else:
        st.title({"en": title, "zh-Hans": zh or title, "zh-Hant": zh_hant or zh or title}[lang()])
    localize_widgets()


def localize_widgets() -> None:
    """Streamlit's own words (the file uploader's drop zone and button, the skip link) in the session's
    language: hidden, and the catalog's text drawn in their place (a style sheet, placed in the sidebar)."""
    hide_deploy = '[data-testid="stAppDeployButton"] {display: none;}'  # a classroom server deploys nothing
    # the drop zone's browse button, not the remove buttons of the files already chosen (they sit in the zone too)
    browse = '[data-testid="stFileUploaderDropzone"] button:not([data-testid="stFileChipDeleteBtn"] button)'
    if lang() == "en":
        st.sidebar.markdown(f"<style>{hide_deploy}</style>", unsafe_allow_html=True)
        return
    st.sidebar.markdown(f"""<style>{hide_deploy}
[data-testid="stFileUploaderDropzoneInstructions"] > div > span,
[data-testid="stFileUploaderDropzoneInstructions"] > div > small {{display: none;}}
[data-testid="stFileUploaderDropzoneInstructions"] > div::after {{content: "{t('uploader_drop')}";}}
{browse}, [data-testid="stSkipToContent"] {{font-size: 0 !important; visibility: hidden;}}
{browse}::after {{content: "{t('uploader_browse')}"; font-size: 0.9rem; visibility: visible;}}
[data-testid="stSkipToContent"]::after {{content: "{t('skip_to_content')}"; font-size: 1rem; visibility: visible;}}
</style>""", unsafe_allow_html=True)


def summary(trace: Trace) -> None:
    """Model, tokens and chosen next token of a trace."""
    m = trace.meta
    text = TokenText(m)
    cols = st.columns(3)
    cols[0].metric(t("model"), m["model"])
    cols[1].metric(t("tokens"), len(m["token_ids"]))
    new = text.generated_labels()
    cols[2].metric(t("next"), f"{m['generated_ids'][0]} {new[0]!r}" if new else "—")
    st.text(" ".join(f"[{escape_controls(label.strip()) or repr(label)}]" for label in text.prompt_labels()[:256]))


def show_notes(trace: Trace, page: str) -> None:
    """The trace's notes and the known errata of the seed documents that concern this page (plain text: a
    note comes from the trace file, so its markdown is not rendered)."""
    for kind, text in notes_for(trace.meta, page, lang()):
        label = t('erratum' if kind == 'erratum' else 'note')
        (st.warning if kind == "erratum" else st.info)(f"{label} · {escape_controls(text)}")


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


def zoomable_heatmap(matrix: np.ndarray, rows: list[str] | None, cols: list[str] | None, title: str,
                     key: str) -> None:
    """A matrix as a heatmap; a large one drawn downsampled, with a region to see at full resolution."""
    from tracer.figures.forward import MAX_CELLS, heatmap

    m = np.asarray(matrix)
    st.plotly_chart(heatmap(m, rows, cols, title, lang=lang()), key=key)
    if m.ndim == 2 and (m.shape[0] > MAX_CELLS or m.shape[1] > MAX_CELLS):
        with st.expander(t("zoom")):
            a, b, c, d = st.columns(4)
            r0 = int(a.number_input(t("zoom_row"), 0, m.shape[0] - 1, 0, key=f"{key}-r0"))
            nr = int(b.number_input(t("zoom_rows"), 1, 64, min(32, m.shape[0]), key=f"{key}-nr"))
            c0 = int(c.number_input(t("zoom_col"), 0, m.shape[1] - 1, 0, key=f"{key}-c0"))
            nc = int(d.number_input(t("zoom_cols"), 1, 64, min(32, m.shape[1]), key=f"{key}-nc"))
            region = (r0, min(m.shape[0], r0 + nr), c0, min(m.shape[1], c0 + nc))
            st.plotly_chart(heatmap(m, rows, cols, title, lang=lang(), region=region), key=f"{key}-zoom")


def vocab_table(logits: np.ndarray, probs: np.ndarray, ids: list[int], text: TokenText) -> list[dict[str, Any]]:
    """Rows of a vocabulary table: rank, id, token text, logit and probability of each id."""
    from tracer.figures.forward import ranks_of

    labels = text.labels(ids)
    ranks = ranks_of(probs, ids)
    return [{t("col_rank"): r, t("col_id"): i, t("col_token"): label, t("col_logit"): float(logits[i]),
             t("col_prob"): float(probs[i])} for i, label, r in zip(ids, labels, ranks)]


def token_search(logits: np.ndarray, probs: np.ndarray, text: TokenText, key: str) -> None:
    """Find tokens by text or id in a vocabulary-wide vector: their logit, probability and rank."""
    query = st.text_input(t("search"), key=f"{key}-search", help=t("search_help"))
    if not query.strip():
        return
    ids = [i for i in text.find(query) if 0 <= i < len(logits)]
    if not ids:
        st.warning(t("search_none", q=query))
        return
    st.dataframe(vocab_table(logits, probs, ids, text), hide_index=True)


def vocab_view(trace: Trace, name: str, key: str) -> None:
    """A vector over the whole vocabulary ([V], or one row of [T, V]): the top tokens with their text, the
    sorted and binned distribution on log axes, and a search."""
    from tracer.engine import ops
    from tracer.figures.forward import top_tokens, vocab_distribution_figure

    value = np.asarray(trace[name], dtype=np.float64)
    if value.ndim == 2:
        row = int(st.number_input(t("position"), 0, value.shape[0] - 1, value.shape[0] - 1, key=f"{key}-row"))
        value = value[row]
    is_probs = trace.info[name]["op"] in ("greedy_probs", "sampling_probs")
    probs = value if is_probs else ops.softmax(value)
    text = TokenText(trace.meta)
    n = int(st.number_input(t("top_n"), 5, 100, 15, key=f"{key}-n"))
    top = [i for i, _, _ in top_tokens(probs if not is_probs else value, None, n)]
    st.dataframe(vocab_table(value, probs, top, text), hide_index=True)
    st.plotly_chart(vocab_distribution_figure(value, probs, lang()), key=f"{key}-dist")
    token_search(value, probs, text, key)
