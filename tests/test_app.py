"""The Streamlit explorer, driven by AppTest: every page on several traces, interactions, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tracer.run import load_model, run_trace  # noqa: E402
from tracer.tracefile import save_trace  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "apps" / "explorer.py")
PAGES = {"run": "Run / open", "pipeline": "Pipeline map", "steps": "Step walker", "attention": "Attention",
         "rope": "RoPE", "moe": "MoE routing", "sampling": "Logits & sampling", "tokens": "Tokens & chat template",
         "compare": "Compare", "long_context": "Long context"}


def make_trace(tmp_path, name, overrides=(), tokens=None, steps=1):
    model = load_model(name, list(overrides))
    ids = tokens or [0, 1, 2, 3]
    return str(save_trace(tmp_path / f"{name}.npz", run_trace(model, ids, max_new_tokens=steps, prompt=None)))


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traces")
    small = ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120"]
    return {
        "toy-dense": make_trace(tmp, "toy-dense", steps=3),
        "toy-moe": make_trace(tmp, "toy-moe"),
        "small": make_trace(tmp, "qwen3-0.6b", small, [5, 6, 7, 8, 9], steps=3),
    }


@pytest.fixture(autouse=True)
def traces_dir(monkeypatch, tmp_path_factory):
    """The app opens files only from its traces folder: here, the folder of every test's files."""
    monkeypatch.setenv("QWEN3_TRACER_TRACES_DIR", str(tmp_path_factory.getbasetemp()))


def app(monkeypatch, trace=None):
    if trace:
        monkeypatch.setenv("QWEN3_TRACER_TRACE", trace)
    else:
        monkeypatch.delenv("QWEN3_TRACER_TRACE", raising=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    return at


def goto(at, page):
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return at


@pytest.mark.parametrize("which", ["toy-dense", "toy-moe", "small"])
def test_every_page_renders_with_its_title(monkeypatch, traces, which):
    at = app(monkeypatch, traces[which])
    for page, title in PAGES.items():
        goto(at, page)
        assert at.title[0].value == title
        assert not at.error, (page, [e.value for e in at.error])


def test_opens_on_the_toy_dense_example(monkeypatch):
    at = app(monkeypatch)
    assert at.title[0].value == "Run / open"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model"] == "toy-dense" and metrics["Next token"] == "4 '請'"


def test_step_walker_next_and_previous(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["toy-dense"]), "steps")
    assert at.subheader[0].value == "tokens"
    at.button[1].click().run()
    assert at.subheader[0].value == "embed.onehot"
    at.button[1].click().run()
    at.button[0].click().run()
    assert at.subheader[0].value == "embed.onehot"
    names = json.loads(str(np.load(traces["toy-dense"])["__meta__"]))["records"]
    index = [r["name"] for r in names].index("layers.0.attn.probs")
    at.selectbox[0].set_value(index).run()
    table = at.table[0].value
    assert list(table.iloc[1]) == ["0.230", "0.770", "0.000", "0.000"]  # seed 004 §3-5-6, row 明天


def test_language_switch(monkeypatch, traces):
    at = app(monkeypatch, traces["toy-dense"])
    next(r for r in at.radio if r.key == "lang_choice").set_value("zh").run()
    assert at.title[0].value == "執行 / 開啟"
    goto(at, "steps")
    assert at.title[0].value == "逐步走查"
    assert at.info[0].value == "輸入的 token id,每個位置一個。"


def test_attention_layer_head_selection(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["small"]), "attention")
    at.number_input[0].set_value(1).run()
    at.number_input[1].set_value(15).run()
    at.selectbox[0].set_value(2).run()
    assert not at.exception and not at.warning


def test_sampling_sliders(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["small"]), "sampling")
    before = at.dataframe[0].value
    next(s for s in at.slider if s.key == "temperature").set_value(0.2).run()
    next(s for s in at.slider if s.key == "top_k").set_value(3).run()
    after = at.dataframe[0].value
    assert not at.exception
    assert (after["probability"] > 0).sum() == 3 and not before.equals(after)


def test_opening_a_trace_file(monkeypatch, traces):
    at = app(monkeypatch, traces["toy-dense"])
    next(x for x in at.text_input if x.key == "open_path").set_value(traces["toy-moe"])
    at.button[1].click().run()
    assert {m.label: m.value for m in at.metric}["Model"] == "toy-moe"


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "not a readable .npz trace"),
    ("foreign", "not a qwen3-tracer trace"),
    ("newer", "newer than this qwen3-tracer"),
])
def test_bad_trace_files_show_a_message_and_the_app_keeps_running(monkeypatch, traces, tmp_path, content, message):
    bad = tmp_path / "bad.npz"
    if content == "foreign":
        np.savez(bad, x=np.ones(2))
    elif content == "newer":
        np.savez(bad, __meta__=np.array(json.dumps({"schema_version": 99, "records": []})))
    else:
        bad.write_bytes(content)
    at = app(monkeypatch, traces["toy-dense"])
    next(x for x in at.text_input if x.key == "open_path").set_value(str(bad))
    at.button[1].click().run()
    assert any(message in e.value for e in at.error)
    assert {m.label: m.value for m in at.metric}["Model"] == "toy-dense"  # still on the trace that was open
    goto(at, "steps")


def test_missing_checkpoint_directory_shows_a_message(monkeypatch, tmp_path):
    at = app(monkeypatch)
    at.text_input[0].set_value(str(tmp_path / "no-such-model"))
    at.button[0].click().run()
    assert any("does not exist" in e.value for e in at.error)
    assert not at.exception


def test_run_a_model_from_the_page(monkeypatch):
    at = app(monkeypatch)
    at.selectbox[0].set_value("toy-moe")
    at.button[0].click().run()
    assert {m.label: m.value for m in at.metric}["Model"] == "toy-moe"


def test_pipeline_node_opens_in_the_step_walker(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["toy-dense"]), "pipeline")
    at.selectbox[0].set_value("layers.0.attn.probs").run()
    assert not at.exception
    assert at.title[0].value == "Step walker" and at.subheader[0].value == "layers.0.attn.probs"
