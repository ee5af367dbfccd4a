"""The Streamlit explorer, driven by AppTest: every page on several traces, interactions, and bad input.

Traces: the toy examples of seed 004, a small random Qwen3, and a 2-layer ``qwen3-0.6b`` with the full
151,936-token vocabulary and 2 decode steps (the shapes where the explorer used to break).
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from tests.apptest import APP, open_explorer  # noqa: E402

from tracer.commands.run import encode_prompt, load_model, run_trace  # noqa: E402
from tracer.i18n import t as catalog_text  # noqa: E402
from tracer.traces.tracefile import load_trace, save_trace  # noqa: E402

PAGES = ["run", "pipeline", "steps", "attention", "rope", "moe", "sampling", "tokens", "compare", "long_context"]
TITLES = {"run": "Run / open", "pipeline": "Pipeline map", "steps": "Step walker", "attention": "Attention",
          "rope": "RoPE", "moe": "MoE routing", "sampling": "Logits & sampling", "tokens": "Tokens & chat template",
          "compare": "Compare", "long_context": "Long context"}


def make_trace(tmp_path, name, overrides=(), tokens=None, steps=1, prompt=None, file=None):
    model = load_model(name, list(overrides))
    ids = encode_prompt(model, prompt) if prompt else (tokens or [0, 1, 2, 3])
    return str(save_trace(tmp_path / (file or f"{name}.npz"),
                          run_trace(model, ids, max_new_tokens=steps, prompt=prompt)))


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traces")
    small = ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120"]
    return {
        "toy-dense": make_trace(tmp, "toy-dense", steps=3),
        "toy-moe": make_trace(tmp, "toy-moe"),
        "small": make_trace(tmp, "qwen3-0.6b", small, [5, 6, 7, 8, 9], steps=3, file="small.npz"),
        # full vocabulary, 2 layers, 2 decode steps; 鱻 is split across two byte-level tokens
        "full": make_trace(tmp, "qwen3-0.6b", ["num_hidden_layers=2"], steps=3, prompt="明天交報告，鱻",
                           file="full.npz"),
    }


@pytest.fixture(autouse=True)
def traces_dir(monkeypatch, tmp_path_factory):
    """The app opens files only from its traces folder: here, the folder of every test's files."""
    monkeypatch.setenv("QWEN3_TRACER_TRACES_DIR", str(tmp_path_factory.getbasetemp()))


def app(monkeypatch, trace=None):
    return open_explorer(monkeypatch, trace)


def goto(at, page):
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return at


def _typed_array(obj):
    """plotly sends numpy arrays as base64 typed arrays: {"dtype": "f8", "bdata": ..., "shape": "2, 2"}."""
    if set(obj) >= {"dtype", "bdata"}:
        import base64

        flat = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
        shape = [int(x) for x in str(obj.get("shape", flat.size)).split(",")]
        return flat.reshape(shape)
    return obj


def figures(at):
    """The page's plotly figures, with their arrays decoded."""
    import plotly.graph_objects as go

    return [go.Figure(json.loads(chart.proto.spec, object_hook=_typed_array)) for chart in at.get("plotly_chart")]


def page_text(at):
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "code", "subheader", "title")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("which", ["toy-dense", "toy-moe", "small", "full"])
def test_every_page_renders_with_data_and_no_server_path(monkeypatch, traces, which):
    at = app(monkeypatch, traces[which])
    folder = str(Path(traces[which]).parent)
    for page in PAGES:
        goto(at, page)
        assert at.title[0].value == TITLES[page]
        assert not at.error, (page, [e.value for e in at.error])
        for fig in figures(at):
            assert fig.data, (page, fig.layout.title.text)
            values = [np.asarray(d.z if d.type == "heatmap" else d.y, dtype=float) for d in fig.data]
            assert any(np.isfinite(v).any() for v in values), (page, fig.layout.title.text)
        text = page_text(at)
        assert folder not in text and "Traceback" not in text, page


@pytest.mark.parametrize("which", ["toy-dense", "full"])
def test_step_walker_reaches_the_last_record(monkeypatch, traces, which):
    at = goto(app(monkeypatch, traces[which]), "steps")
    last = len(at.selectbox(key="steps_record").options) - 1
    at.selectbox(key="steps_record").set_value(last - 1).run()
    at.button(key="steps_next").click().run()  # Next onto the last record (sample.*.token_id)
    assert not at.exception
    assert at.subheader[0].value.startswith("sample.") and at.subheader[0].value.endswith(".token_id")
    assert at.button(key="steps_next").disabled
    assert any(c.value.startswith("recorded value") and c.value.endswith("✓") for c in at.caption)


def test_opens_on_the_toy_dense_example(monkeypatch):
    at = app(monkeypatch)
    assert at.title[0].value == "Run / open"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model"] == "toy-dense" and metrics["Next token"] == "4 '請'"


def test_step_walker_next_and_previous(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["toy-dense"]), "steps")
    assert at.subheader[0].value == "tokens"
    at.button(key="steps_next").click().run()
    assert at.subheader[0].value == "embed.onehot"
    at.button(key="steps_next").click().run()
    at.button(key="steps_previous").click().run()
    assert at.subheader[0].value == "embed.onehot"
    names = load_trace(traces["toy-dense"]).meta["records"]
    index = [r["name"] for r in names].index("layers.0.attn.probs")
    at.selectbox(key="steps_record").set_value(index).run()
    table = at.table[0].value
    assert list(table.iloc[1]) == ["0.230", "0.770", "0.000", "0.000"]  # seed 004 §3-5-6, row 明天


def test_step_walker_shows_the_weights_as_the_seed_writes_them_and_a_worked_cell(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["toy-dense"]), "steps")
    names = [r["name"] for r in load_trace(traces["toy-dense"]).meta["records"]]
    at.selectbox(key="steps_record").set_value(names.index("layers.0.attn.q_proj")).run()
    text = page_text(at)
    assert "model.layers.0.self_attn.q_proj.weight" in text and "[2, 4]" in text and "[4, 2]" in text
    assert "[out, in]" in text
    # seed 004 §3-5-3 W_Q as printed ([in, out]): rows (1, 0), (0, 1), (1, 0), (0, 1)
    seed_wq = next(tb.value for tb in at.table if tb.value.shape == (4, 2))
    assert seed_wq.values.tolist() == [["1.000", "0.000"], ["0.000", "1.000"], ["1.000", "0.000"], ["0.000", "1.000"]]
    cell = [x for x in at.number_input if x.key and x.key.startswith("cell-")]
    cell[0].set_value(2).run()  # token 交, q[2, 1] = 0·0 + 2·1 + 0·0 + 0·1 = 2 (§3-5-3 Q_raw row 交)
    [cell_1] = [x for x in at.number_input if x.key == "cell-2"]
    cell_1.set_value(1).run()
    assert at.code[-1].value.splitlines()[-1] == "= 2" and "0·0 + 2·1 + 0·0 + 0·1" in at.code[-1].value


def _new_kind_trace(kind):
    """A training step, a Qwen3-VL prompt with an image, or a trace with its logit lens and attribution."""
    if kind == "train":
        from tracer.engine.train import Optimizer
        from tracer.commands.train_run import train_step

        return train_step(load_model("toy-moe"), [0, 1, 2, 3, 4], optimizer=Optimizer("sgd", 0.1))
    if kind == "vision":
        pytest.importorskip("PIL")
        from tracer.vision.placement import PLACEHOLDER

        model = load_model("qwen3-vl-tiny")
        image = np.random.default_rng(0).integers(0, 256, (50, 40, 3)).astype(np.uint8)
        return run_trace(model, encode_prompt(model, PLACEHOLDER + "What?"), images=[image])
    return run_trace(load_model("qwen3-0.6b", ["num_hidden_layers=2", "hidden_size=32", "head_dim=8",
                                               "intermediate_size=48", "vocab_size=120"]), [5, 6, 7], capture=["*"])


@pytest.mark.parametrize("kind, records", [
    ("train", ["train.token_loss", "train.loss", "grad.logits", "grad.layers.0.moe.router_probs",
               "grad.param.model.layers.0.mlp.gate.weight", "update.param.model.layers.0.self_attn.q_proj.weight"]),
    ("vision", ["vision.images.0.resized", "vision.patch_embed", "vision.blocks.0.attn_norm", "vision.merger.merge",
                "embed.spliced", "rope.position_ids", "rope.cos", "layers.0.deepstack"]),
    ("lens", ["lens.0.logits", "lens.0.top_probs", "attrib.target_ids", "attrib.0.heads", "attrib.1.mlp"]),
])
def test_step_walker_redoes_cells_of_training_vision_and_lens_records(monkeypatch, tmp_path, kind, records):
    path = str(save_trace(tmp_path / f"{kind}.npz", _new_kind_trace(kind)))
    names = [r["name"] for r in load_trace(path).meta["records"]]
    at = goto(app(monkeypatch, path), "steps")
    unavailable = catalog_text("app.no_worked", "en", op="").split("(")[0]
    for name in records:
        at.selectbox(key="steps_record").set_value(names.index(name)).run()
        assert not at.exception and not at.error, (name, [e.value for e in at.error])
        assert not any(unavailable in i.value for i in at.info), name
        assert any(c.value.startswith("recorded value") and c.value.endswith("✓") for c in at.caption), name
        assert at.code[-1].value.strip(), name


def test_language_switch(monkeypatch, traces):
    at = app(monkeypatch, traces["toy-dense"])
    next(r for r in at.radio if r.key == "lang_choice").set_value("zh-Hant").run()
    assert at.title[0].value == "執行 / 開啟"
    goto(at, "steps")
    assert at.title[0].value == "逐步走查"
    assert catalog_text("schema.tokens", "zh-Hant") in [i.value for i in at.info]
    next(r for r in at.radio if r.key == "lang_choice").set_value("zh-Hans").run()
    assert at.title[0].value == "逐步走查" and "输入的 token id,每个位置一个。" in [i.value for i in at.info]


def test_steps_page_in_chinese_shows_the_formulas_words_in_chinese(monkeypatch, traces):
    from tracer.traces.schema import OPS

    words = json.loads((Path(APP).parents[1] / "tracer" / "i18n" / "zh-Hans" / "latex.json").read_text("utf-8"))
    at = app(monkeypatch, traces["toy-dense"])
    next(r for r in at.radio if r.key == "lang_choice").set_value("zh-Hans").run()
    goto(at, "steps")
    names = [r["name"] for r in load_trace(traces["toy-dense"]).meta["records"]]
    at.selectbox(key="steps_record").set_value(names.index("layers.0.attn.mask")).run()
    assert not at.exception and at.subheader[0].value == "layers.0.attn.mask"
    [formula] = [x.value for x in at.latex]
    assert rf"\text{{{words['otherwise']}}}" in formula and "otherwise" not in formula, formula
    at.selectbox(key="steps_record").set_value(names.index("decode.1.layers.0.attn.k_cache")).run()
    [formula] = [x.value for x in at.latex]
    assert all(rf"\text{{{words[w]}}}" in formula for w in ("cache", "past", "new")), formula
    next(r for r in at.radio if r.key == "lang_choice").set_value("en").run()
    assert [x.value.strip("$\n") for x in at.latex] == [OPS["kv_append"].latex]  # English: the schema's own


def test_decode_steps_show_the_new_query_against_every_cached_key(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["full"]), "attention")
    at.number_input(key="attn_layer").set_value(1).run()
    at.selectbox(key="attn_step").set_value(2).run()
    assert not at.exception and not at.warning
    [fig] = [f for f in figures(at) if len(f.data) == 2 and f.data[0].type == "bar"]
    keys = list(fig.data[1].x)
    assert len(keys) == 6 + 2  # 6 prompt tokens + the 2 generated before step 2
    assert keys[0] == "0:明天" and keys[4] == "4:<0xE9><0xB1>" and abs(sum(fig.data[1].y) - 1) < 1e-5
    assert all(len(d.y) == 8 and np.isfinite(d.y).all() for d in fig.data)


def test_full_size_causal_mask_is_drawn(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["full"]), "attention")
    mask = next(f for f in figures(at) if "mask" in f.layout.title.text)
    z = np.array(mask.data[0].z, dtype=float)
    assert np.nanmin(z) == 0 and np.nanmax(z) == 1 and mask.data[0].zmax > mask.data[0].zmin
    assert z[0, 1] == 0 and z[-1, 0] == 1  # the future is masked, the past visible


def test_attention_layer_head_selection(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["small"]), "attention")
    at.number_input(key="attn_layer").set_value(1).run()
    at.number_input(key="attn_head").set_value(15).run()
    at.selectbox(key="attn_step").set_value(2).run()
    assert not at.exception and not at.warning
    [fig] = [f for f in figures(at) if len(f.data) == 2 and f.data[0].type == "bar"]
    recorded = np.asarray(load_trace(traces["small"])["decode.2.layers.1.attn.probs"])[15, -1]  # head 15, the new query
    assert len(recorded) == 5 + 2  # 5 prompt tokens + the 2 generated before step 2
    np.testing.assert_allclose(np.array(fig.data[1].y, dtype=float), recorded, rtol=1e-6)


def test_sampling_shows_token_text_and_finds_tokens(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["full"]), "sampling")
    meta = load_trace(traces["full"]).meta
    chosen = meta["generated_ids"][0]
    assert at.metric[0].value.startswith(f"{chosen} 「") and at.metric[0].value != f"{chosen} 「{chosen}」"
    top = at.dataframe[0].value
    assert top.iloc[0]["id"] == chosen and top.iloc[0]["rank"] == 1 and isinstance(top.iloc[0]["token"], str)
    next(x for x in at.text_input if x.key == "sampling-search").set_value("明天").run()
    found = at.dataframe[1].value
    logits = np.load(traces["full"])["sample.0.masked_logits"].astype(np.float64)
    assert found.iloc[0]["id"] == 104807 and found.iloc[0]["token"] == "明天"
    assert found.iloc[0]["logit"] == pytest.approx(logits[104807])
    assert found.iloc[0]["rank"] == int(np.sum(logits > logits[104807])) + 1


def test_sampling_sliders(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["small"]), "sampling")
    before = at.dataframe[-2].value
    next(s for s in at.slider if s.key == "temperature").set_value(0.2).run()
    next(s for s in at.slider if s.key == "top_k").set_value(3).run()
    after = at.dataframe[-2].value
    assert not at.exception
    assert (after["probability"] > 0).sum() == 3 and not before.equals(after)


def test_tokens_page_keeps_split_characters_and_bytes(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["full"]), "tokens")
    table = at.dataframe[0].value
    assert table["token"].tolist()[-2:] == ["<0xE9><0xB1>", "<0xBB>"]
    assert table["joined text"].tolist()[-2:] == ["鱻", "鱻"] and table["bytes"].tolist()[-1] == "bb"


def test_chat_template_keeps_newlines_and_marks_special_tokens(monkeypatch, tmp_path):
    model = load_model("qwen3-0.6b", ["num_hidden_layers=1", "hidden_size=32", "head_dim=8", "intermediate_size=16",
                                      "num_attention_heads=2", "num_key_value_heads=1"])
    from tracer.commands.run import chat_prompt

    text = chat_prompt(model, "你好", "Be brief.", False)
    path = save_trace(tmp_path / "chat.npz", run_trace(model, encode_prompt(model, text), prompt=text))
    at = goto(app(monkeypatch, str(path)), "tokens")
    shown = next(m.value for m in at.markdown if "chat-template" in m.value)
    assert shown.count("<br>") == text.count("\n") and "&lt;|im_start|&gt;" in shown and "background:#ffe08a" in shown


def test_rope_distance_figure_and_caption(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["small"]), "rope")
    fig = next(f for f in figures(at) if "distance" in (f.layout.xaxis.title.text or ""))
    curves = [np.array(d.y, dtype=float) for d in fig.data]
    assert len(curves) == 3 and np.allclose(curves[0], curves[1], atol=1e-9) and np.allclose(curves[0], curves[2])
    assert np.ptp(curves[0]) > 0  # the score does change with distance
    assert any("depends only on the distance" in c.value for c in at.caption)


def test_pipeline_groups_layers(monkeypatch, tmp_path):
    path = make_trace(tmp_path, "qwen3-0.6b", ["num_hidden_layers=20", "hidden_size=16", "head_dim=4",
                                               "intermediate_size=8", "vocab_size=50"], [1, 2, 3])
    at = goto(app(monkeypatch, path), "pipeline")
    assert [e.label for e in at.expander] == ["Layers 0–7", "Layers 8–15", "Layers 16–19"]
    assert len(figures(at)) == 4


def test_compare_page_difference_growth_and_first_divergence(monkeypatch, traces, tmp_path):
    rounded = str(save_trace(tmp_path / "rounded.npz", run_trace(load_model("toy-moe"), [0, 1, 2, 3],
                                                                  round_decimals=3)))
    at = goto(app(monkeypatch, traces["toy-moe"]), "compare")
    next(x for x in at.text_input if x.key == "compare_path").set_value(rounded).run()
    assert not at.exception and not at.error
    assert any("first divergence" in m.value for m in at.markdown)
    figs = figures(at)
    growth = next(f for f in figs if f.layout.title.text == "error growth across layers")
    assert growth.data and len(growth.data[0].y) == 1
    diff = next(f for f in figs if f.layout.title.text.startswith("A − B"))
    assert np.nanmax(np.abs(np.array(diff.data[0].z, dtype=float))) > 0


def test_compare_page_verdicts_and_notes_in_chinese(monkeypatch, traces, tmp_path):
    rounded = str(save_trace(tmp_path / "rounded.npz", run_trace(load_model("toy-moe"), [0, 1, 2, 3],
                                                                  round_decimals=3)))
    at = open_explorer(monkeypatch, traces["toy-moe"], "compare", "zh-Hans")
    next(x for x in at.text_input if x.key == "compare_path").set_value(rounded).run()
    assert not at.exception and not at.error
    zh = json.loads((Path(APP).parents[1] / "tracer/i18n/zh-Hans/compare.json").read_text(encoding="utf-8"))
    table = at.dataframe[0].value
    verdicts = set(table[table.columns[1]])
    assert verdicts and verdicts <= {zh[f"verdict_{v}"] for v in ("OK", "DIFF", "SHAPE", "NONFINITE", "MISSING")}
    assert zh["verdict_DIFF"] in verdicts


def test_opening_a_trace_file(monkeypatch, traces):
    at = app(monkeypatch, traces["toy-dense"])
    next(x for x in at.text_input if x.key == "open_path").set_value(traces["toy-moe"])
    at.button(key="open_button").click().run()
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
    at.button(key="open_button").click().run()
    assert any(message in e.value for e in at.error)
    assert {m.label: m.value for m in at.metric}["Model"] == "toy-dense"  # still on the trace that was open
    goto(at, "steps")


def test_missing_checkpoint_directory_shows_a_message(monkeypatch, tmp_path):
    at = app(monkeypatch)
    at.text_input(key="run_checkpoint_dir").set_value(str(tmp_path / "no-such-model"))
    at.button(key="run_button").click().run()
    assert any("does not exist" in e.value for e in at.error)
    assert not at.exception


def test_run_a_model_from_the_page_with_every_option(monkeypatch):
    at = app(monkeypatch)
    at.selectbox(key="run_model").set_value("toy-moe")
    next(x for x in at.number_input if x.label.startswith("Round")).set_value(3)
    next(x for x in at.number_input if x.label == "Seed").set_value(7)
    next(x for x in at.text_input if x.label.startswith("Suppress")).set_value("0,5,1")
    next(x for x in at.text_input if x.label.startswith("Capture")).set_value("layers.*, sample.*")
    next(x for x in at.number_input if x.label == "New tokens").set_value(2)
    at.button(key="run_button").click().run()
    assert not at.error and {m.label: m.value for m in at.metric}["Model"] == "toy-moe"
    trace = at.session_state.trace
    assert trace.meta["round"] == 3 and trace.meta["sampling"]["suppress"] == [0, 5, 1]
    assert trace.meta["sampling"]["seed"] == 7 and not any(n.startswith("embed.") for n in trace.names)
    assert len(trace.meta["generated_ids"]) == 2


def test_run_page_rejects_bfloat16_on_numpy(monkeypatch):
    at = app(monkeypatch)
    next(x for x in at.selectbox if x.label == "Data type").set_value("bfloat16")
    at.button(key="run_button").click().run()
    assert any("needs the torch backend" in e.value for e in at.error)


def test_pipeline_node_opens_in_the_step_walker(monkeypatch, traces):
    at = goto(app(monkeypatch, traces["toy-dense"]), "pipeline")
    at.selectbox(key="pipeline_record").set_value("layers.0.attn.probs").run()
    assert not at.exception
    assert at.title[0].value == "Step walker" and at.subheader[0].value == "layers.0.attn.probs"
