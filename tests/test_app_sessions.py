"""The explorer serving a class: many sessions at once without cross-talk, a bounded run queue and memory, the
class password, the traces folder, and one-line errors without server paths."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.apptest import APP  # noqa: E402

import tracer.commands.run  # noqa: E402
from tracer.commands.run import load_model, run_trace  # noqa: E402
from tracer.traces.tracefile import save_trace  # noqa: E402

SMALL = ["num_hidden_layers=1", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=97"]


@pytest.fixture
def traces_dir(tmp_path, monkeypatch):
    folder = tmp_path / "traces"
    folder.mkdir()
    monkeypatch.setenv("QWEN3_TRACER_TRACES_DIR", str(folder))
    monkeypatch.delenv("QWEN3_TRACER_TRACE", raising=False)
    monkeypatch.delenv("TRACER_APP_PASSWORD", raising=False)
    monkeypatch.setenv("QWEN3_TRACER_WORKERS", "2")
    monkeypatch.setenv("QWEN3_TRACER_MAX_MEMORY", str(2 * 1024**3))
    return folder


def field(at: AppTest, label_start: str):
    return next(x for x in at.text_input if x.label.startswith(label_start))


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def concurrent_apptests(monkeypatch):
    """AppTest is written for one run at a time: each run installs a mock Runtime and clears it when it ends,
    which would pull the Runtime from under the other sessions. Keep one mock Runtime for whichever sessions
    run while another's run is clearing it (each session still has its own session state)."""
    from unittest.mock import MagicMock

    from streamlit.runtime import Runtime
    from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.runtime.media_file_manager import MediaFileManager

    keeper = MagicMock(spec=Runtime)
    keeper.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    keeper.cache_storage_manager = MemoryCacheStorageManager()
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: cls._instance or keeper))
    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))
    # a served app compiles each page once into a cache shared by all sessions; AppTest compiles on every run,
    # and CPython 3.11's compiler is not safe to run from several threads at once: compile one at a time
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    compiling = threading.Lock()
    original = ScriptCache.get_bytecode

    def get_bytecode(self, script_path):
        with compiling:
            return original(self, script_path)

    monkeypatch.setattr(ScriptCache, "get_bytecode", get_bytecode)


def test_ten_sessions_at_once_keep_to_themselves(traces_dir, monkeypatch, concurrent_apptests):
    """Five sessions open different trace files, five run different models, all at the same time: each ends with
    its own trace, at most two runs compute at once (the queue), and memory stays bounded."""
    expected = {}
    for k in range(5):
        ids = list(range(1, 3 + k))
        model = load_model("qwen3-0.6b", SMALL + [f"hidden_size={32 + 8 * k}"])
        save_trace(traces_dir / f"t{k}.npz", run_trace(model, ids))
        expected[k] = ("qwen3-0.6b", len(ids), 32 + 8 * k)
    for k in range(5, 10):
        expected[k] = ("toy-moe" if k % 2 else "toy-dense", k - 3, None)

    active, peak, lock = [0], [0], threading.Lock()

    def counted_run(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.3)  # hold the worker long enough for the others to queue
            return run_trace(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(tracer.commands.run, "run_trace", counted_run)
    private_tmp = traces_dir.parent / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    sessions = [AppTest.from_file(APP, default_timeout=180) for _ in range(10)]
    for at in sessions:
        at.run()
    before = rss_bytes()
    errors: list[BaseException] = []

    def act(k: int, at: AppTest) -> None:
        try:
            if k < 5:
                field(at, "…or a file of the traces folder").set_value(f"t{k}.npz")
                button(at, "Open").click().run()
            else:
                at.selectbox(key="run_model").set_value(expected[k][0])
                field(at, "…or token ids").set_value(",".join(str(i % 6) for i in range(k - 3)))
                button(at, "Run").click().run()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=act, args=(k, at)) for k, at in enumerate(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert not errors, errors
    for k, at in enumerate(sessions):
        assert not at.exception and not at.error, (k, [e.value for e in at.error])
        model, n_tokens, hidden = expected[k]
        shown = metrics(at)
        assert shown["Model"] == model and shown["Tokens"] == str(n_tokens), (k, shown)
        trace = at.session_state["trace"]
        assert len(trace.meta["token_ids"]) == n_tokens
        if hidden is not None:
            assert trace.meta["config"]["hidden_size"] == hidden
    assert 1 <= peak[0] <= 2  # the bounded worker pool: never more than QWEN3_TRACER_WORKERS runs at once
    assert rss_bytes() - before < 1024**3
    assert not list(private_tmp.iterdir())  # no session left a temporary file or folder


def test_a_run_over_the_session_budget_is_refused(traces_dir, monkeypatch):
    monkeypatch.setenv("QWEN3_TRACER_MAX_MEMORY", str(64 * 1024**2))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.selectbox(key="run_model").set_value("qwen3-0.6b")
    field(at, "…or token ids").set_value("1,2,3")
    button(at, "Run").click().run()
    assert not at.exception
    assert any("budget" in e.value and "num_hidden_layers=2" in e.value for e in at.error)


def test_the_class_password_comes_first(traces_dir, monkeypatch):
    monkeypatch.setenv("TRACER_APP_PASSWORD", "open sesame")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.title or at.title[0].value == "qwen3-tracer"
    assert not at.metric and not at.tabs  # nothing of the app before the password
    at.text_input(key="guard_typed").set_value("guess")
    at.button(key="guard_enter").click().run()
    assert at.error and "not the class password" in at.error[0].value and not at.metric
    at.text_input(key="guard_typed").set_value("open sesame")
    at.button(key="guard_enter").click().run()
    assert not at.exception and metrics(at)["Model"] == "toy-dense"


@pytest.mark.parametrize("typed", ["/etc/passwd", "../outside.npz", "{outside}", "link.npz", "sub/../../x.npz"])
def test_paths_outside_the_traces_folder_are_refused(traces_dir, typed):
    outside = traces_dir.parent / "outside.npz"
    save_trace(outside, run_trace(load_model("toy-dense"), [0, 1]))
    (traces_dir / "link.npz").symlink_to(outside)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    field(at, "…or a file of the traces folder").set_value(typed.format(outside=outside))
    button(at, "Open").click().run()
    assert not at.exception
    assert at.error and "not in the traces folder" in at.error[0].value
    assert str(traces_dir) not in at.error[0].value and "/tmp" not in at.error[0].value
    assert metrics(at)["Tokens"] == "4"  # still the default trace


def test_an_unexpected_error_is_one_line_without_paths(traces_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError(f"boom in {traces_dir}/secret")

    monkeypatch.setattr(tracer.commands.run, "load_model", broken)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    button(at, "Run").click().run()
    assert not at.exception
    assert at.error and "RuntimeError" in at.error[0].value and "secret" not in at.error[0].value


def test_strings_from_a_trace_are_shown_as_plain_text(traces_dir, monkeypatch):
    model = load_model("toy-dense")
    trace = run_trace(model, [0, 1, 2])
    trace.meta["token_labels"] = ["![x](http://evil.example/x.png)", "<img src=x>", "**b**"]
    trace.meta["token_bytes"] = [label.encode().hex() for label in trace.meta["token_labels"]]  # text from these
    path = save_trace(traces_dir / "md.npz", trace)
    monkeypatch.setenv("QWEN3_TRACER_TRACE", str(path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert any("![x](http://evil.example/x.png)" in t.value for t in at.text)
    assert not any("evil.example" in m.value for m in at.markdown)
    assert np.isfinite(at.session_state["trace"]["logits"]).all()
