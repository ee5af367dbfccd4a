"""The explorer's guard: the class password, the traces folder, the per-session budget, the shared run queue,
and an error boundary that shows one line (never a traceback or a server path).

``tracer app`` hands the teacher's settings over in the environment (see ``tracer.safety.serve``); a session keeps
nothing but its own ``st.session_state``, and the only state shared by sessions is the run queue.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from tracer import Message, TracerError
from tracer.i18n import normalize
from tracer.i18n import t as tr
from tracer.safety.budget import check_budget, default_budget, estimate
from tracer.safety.safefiles import confine, escape_controls
from tracer.safety.serve import BUDGET_ENV, PASSWORD_ENV, TRACES_DIR_ENV, UPLOAD_ENV, WORKERS_ENV, default_traces_dir

_LOG = logging.getLogger("qwen3-tracer.app")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


@dataclass(frozen=True)
class Settings:
    """What the teacher set with ``tracer app`` flags (defaults when the app runs without them)."""

    traces_dir: Path
    password: str
    budget: int
    workers: int
    max_upload_mb: int


def settings() -> Settings:
    env = os.environ
    workers = int(env.get(WORKERS_ENV) or 2)
    return Settings(
        traces_dir=Path(env.get(TRACES_DIR_ENV) or default_traces_dir()),
        password=env.get(PASSWORD_ENV, ""),
        budget=int(env.get(BUDGET_ENV) or default_budget() // workers),
        workers=workers,
        max_upload_mb=int(env.get(UPLOAD_ENV) or 200),
    )


def lang() -> str:
    """This session's language as a catalog name (English for a tag that is not one)."""
    try:
        return normalize(st.session_state.get("lang", "en"))
    except TracerError:
        return "en"


def gate() -> None:
    """Ask for the class password before anything else (when the teacher set one); stop the page until given."""
    password = settings().password
    if not password or st.session_state.get("_guard_ok"):
        return
    st.title("qwen3-tracer")
    with st.form("guard_password"):
        typed = st.text_input(tr("app_safety.password", lang()), type="password", key="guard_typed")
        sent = st.form_submit_button(tr("app_safety.enter", lang()), key="guard_enter")
    if sent:
        if hmac.compare_digest(typed.encode("utf-8"), password.encode("utf-8")):
            st.session_state._guard_ok = True
            st.rerun()
        time.sleep(0.5)  # slows guessing
        st.error(tr("app_safety.wrong_password", lang()))
    st.stop()


def scrub(message: str) -> str:
    """A message fit for the page: one line, control characters escaped, server folders replaced by ``…``."""
    text = escape_controls(" ".join(str(message).split("\n")))
    folders = {str(settings().traces_dir), str(settings().traces_dir.resolve()), str(Path.home())}
    for folder in sorted(folders, key=len, reverse=True):
        if folder and folder != "/":
            text = text.replace(folder + os.sep, "").replace(folder, "…")
    return text


def error_text(exc: TracerError) -> str:
    """A TracerError's message in this session's language, fit for the page (one line, no server folders)."""
    return scrub(exc.text(lang()))


def scrubbed(exc: TracerError) -> TracerError:
    """``exc`` with server folders taken out of its values, so that it still reads in every language."""
    if exc.message is None:
        return TracerError(scrub(str(exc)))  # a fixed text (a third-party message): scrubbed as it is
    return TracerError.of(exc.message.key, **_scrubbed_values(exc.message.values))


def _scrubbed_values(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _scrubbed_value(value) for name, value in values.items()}


def _scrubbed_value(value: Any) -> Any:
    if isinstance(value, Message):
        return Message(value.key, **_scrubbed_values(value.values))
    if isinstance(value, TracerError):
        return scrubbed(value)
    if isinstance(value, (str, os.PathLike)):
        return scrub(os.fspath(value))
    return value


def show_error(exc: BaseException) -> None:
    """One-line error box: a TracerError's message, or the kind of an unexpected failure (logged on the server)."""
    if isinstance(exc, TracerError):
        st.error(error_text(exc))
    else:
        _LOG.exception("unexpected error in the explorer")
        st.error(tr("app_safety.unexpected", lang(), kind=type(exc).__name__))


@contextmanager
def boundary() -> Iterator[None]:
    """Run a page: any error ends it with a one-line message box instead of a traceback."""
    try:
        yield
    except MemoryError:
        st.error(tr("app_safety.out_of_memory", lang()))
    except Exception as exc:  # Streamlit's stop and rerun are BaseExceptions and pass through
        show_error(exc)


def plain(text: Any) -> str:
    """Text from a trace file shown literally: markdown characters escaped (no links, images or HTML).

    >>> plain("![x](http://e/a.png) **b**")
    '\\\\!\\\\[x\\\\]\\\\(http://e/a\\\\.png\\\\) \\\\*\\\\*b\\\\*\\\\*'
    """
    return _MARKDOWN.sub(r"\\\1", escape_controls(str(text)))


def formula(info: dict[str, Any], lang: str = "en") -> str:
    """The LaTeX of a record's op from this version's schema, its words in ``lang`` (a file's own formula text
    is never rendered)."""
    from tracer.traces.schema import OPS, latex

    op = str(info.get("op"))
    return latex(op, lang) if op in OPS else r"\text{?}"


def trace_path(typed: str, what: str = "trace file") -> Path:
    """A typed name or path, confined to the traces folder (a TracerError without server paths otherwise)."""
    try:
        return confine(settings().traces_dir, typed, what)
    except TracerError as exc:
        raise scrubbed(exc) from None


def trace_files() -> list[str]:
    """The ``.npz`` files of the traces folder, by name (what a student may open without uploading)."""
    folder = settings().traces_dir
    try:
        return sorted(p.name for p in folder.glob("*.npz") if p.is_file())[:500]
    except OSError:
        return []


def check_run(cfg: Any, n_tokens: int, max_new_tokens: int, capture: list[str] | None, backend: str) -> None:
    """Refuse a run over this session's budget, before it allocates anything."""
    est = estimate(cfg, n_tokens, max_new_tokens, capture, "float32", backend)
    check_budget(est, settings().budget, flag="tracer app --max-memory")


@st.cache_resource(show_spinner=False)
def _run_queue(workers: int) -> threading.BoundedSemaphore:
    """One queue per server: at most ``workers`` runs at once, shared by every session."""
    return threading.BoundedSemaphore(workers)


@contextmanager
def run_slot() -> Iterator[None]:
    """Wait for a free worker (showing the queue), then hold it for one run.

    Waiting polls the page, so a session that is closed or whose run is cancelled (the Stop button, or any
    widget change, which reruns the page) leaves the queue at once.
    """
    queue = _run_queue(settings().workers)
    note = st.empty()
    waited = 0.0
    while not queue.acquire(timeout=0.25):
        waited += 0.25
        note.info(tr("app_safety.queued", lang(), seconds=int(waited)))
    note.empty()
    try:
        yield
    finally:
        queue.release()


def upload_limit_bytes() -> int:
    """The upload cap of this server, in bytes (``tracer app --max-upload-mb``)."""
    return settings().max_upload_mb * 1024 * 1024
