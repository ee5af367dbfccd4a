"""The explorer's Vision page and its figures, on a qwen3-vl-tiny trace and on a text-only trace."""

import base64
import json

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from tests.apptest import open_explorer  # noqa: E402

from tracer.commands.run import encode_prompt, load_model, run_trace  # noqa: E402
from tracer.i18n import t as catalog_text  # noqa: E402
from tracer.traces.show import format_record  # noqa: E402
from tracer.traces.tracefile import save_trace  # noqa: E402
from tracer.vision.figures import mrope_grid_figure, patch_attention_figure, to_raster, token_map_figure  # noqa: E402
from tracer.vision.placement import PLACEHOLDER  # noqa: E402

OTHER_PAGES = ["run", "pipeline", "steps", "attention", "rope", "sampling", "tokens"]


@pytest.fixture(scope="module")
def vl_trace(tmp_path_factory):
    model = load_model("qwen3-vl-tiny")
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3)).astype(np.uint8)
    trace = run_trace(model, encode_prompt(model, PLACEHOLDER + "What?"), images=[image], max_new_tokens=2)
    return str(save_trace(tmp_path_factory.mktemp("vl") / "vl.npz", trace)), trace


def _decoded(chart) -> dict:
    """A plotly chart's JSON with its base64 typed arrays ({"dtype", "bdata", "shape"}) as numpy arrays."""
    def typed(obj: dict):
        if set(obj) >= {"dtype", "bdata"}:
            flat = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            return flat.reshape([int(x) for x in str(obj.get("shape", flat.size)).split(",")])
        return obj

    return json.loads(chart.proto.spec, object_hook=typed)


def open_app(monkeypatch, path, lang=None):
    return open_explorer(monkeypatch, path, lang=lang)


def test_vision_page_shows_grid_attention_mrope_deepstack_and_errata(monkeypatch, vl_trace):
    at = open_app(monkeypatch, vl_trace[0])
    at.switch_page("views/vision.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Vision (Qwen3-VL)"
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(charts) == 6
    assert "64×96" in at.markdown[0].value and "6 tokens" in at.markdown[0].value
    assert any("1644" in m.value for m in at.markdown)  # the seed's erratum is listed
    at.number_input(key="vision_block").set_value(3).run()  # vision block 3
    at.number_input(key="vision_query").set_value(5).run()  # query patch 5
    assert not at.exception
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-attention"))  # key="attention"
    heat = np.asarray(_decoded(chart)["data"][1]["z"], dtype=float)
    probs = np.asarray(vl_trace[1]["vision.blocks.3.attn.probs"])[0, 5]  # head 0, query patch 5
    assert heat.shape == (64, 96)
    assert heat[0, 16] == pytest.approx(probs[1]) and heat[16, 0] == pytest.approx(probs[2])
    for page in OTHER_PAGES:  # the text pages still work on a vision-language trace
        at.switch_page(f"views/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.title[0].value == catalog_text(f"app.nav_{page}", "en")


def test_vision_page_on_a_text_trace_offers_a_demo(monkeypatch, tmp_path):
    model = load_model("toy-dense")
    path = str(save_trace(tmp_path / "toy.npz", run_trace(model, [0, 1, 2, 3])))
    at = open_app(monkeypatch, path)
    at.switch_page("views/vision.py")
    at.run()
    assert "no image" in at.info[0].value
    at.button(key="vision_demo").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 6


def test_figures_follow_the_recorded_probabilities(vl_trace):
    _, trace = vl_trace
    probs = np.asarray(trace["vision.blocks.1.attn.probs"])[2, 5]
    fig = patch_attention_figure(trace, 0, 1, 2, 5)
    heat = np.asarray(fig.data[1].z)
    assert heat.shape == (64, 96)  # one value per pixel of the resized image
    assert heat[0, 16] == pytest.approx(probs[1])  # patch 1 of the merge-block order is row 0, col 1
    assert heat[16, 0] == pytest.approx(probs[2])  # patch 2 is row 1, col 0
    np.testing.assert_array_equal(to_raster(np.arange(8), 2, 4, 2), [[0, 1, 4, 5], [2, 3, 6, 7]])
    assert np.asarray(token_map_figure(trace, 0).data[0].z).max() == 5  # 4×6 patches -> 6 tokens
    grid = mrope_grid_figure(trace).data[1]  # the image tokens at (w, h) = (s + col, s + row), s = 1
    assert sorted(zip(grid.x, grid.y)) == [(w, h) for w in (1, 2, 3) for h in (1, 2)]


def test_show_prints_vision_records(vl_trace):
    _, trace = vl_trace
    for name in ("vision.pixel_values", "vision.blocks.0.attn.probs", "rope.position_ids", "layers.0.deepstack"):
        assert name in format_record(trace, name, "en")


def test_pipeline_map_puts_the_vision_tower_above_the_text_layers(vl_trace):
    from tracer.figures.forward import pipeline_figure

    _, trace = vl_trace
    nodes = pipeline_figure(trace).data[1]
    row = dict(zip(nodes.customdata, nodes.y))
    assert row["vision.blocks.0.resid_post"] < row["vision.blocks.3.resid_post"] < row["tokens"] == 0
    assert row["vision.merger.out"] == 0 and row["layers.0.deepstack"] == 1  # DeepStack marked in layer 0's row
    edges = pipeline_figure(trace).data[0]
    assert any(y == row["vision.deepstack.0.out"] for y in edges.y if y is not None)


def _chart(at, key: str) -> dict:
    """The decoded plotly JSON of the chart with streamlit key ``key``."""
    return _decoded(next(c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")))


def _title(fig: dict, axis: str | None = None) -> str:
    layout = fig["layout"][axis] if axis else fig["layout"]
    return layout["title"]["text"]


@pytest.mark.parametrize("lang", ["zh-Hans", "zh-Hant"])
def test_vision_page_in_chinese(monkeypatch, vl_trace, lang):
    def text(key: str, **values) -> str:  # the catalog's text, which must not be the English one
        found = catalog_text(key, lang, **values)
        assert found != catalog_text(key, "en", **values), key
        return found

    at = open_app(monkeypatch, vl_trace[0], lang)
    at.switch_page("views/vision.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == text("vision.page_title")
    assert at.selectbox(key="vision_image").label == text("vision.image")
    assert at.selectbox(key="vision_image").options == [text("vision.image_option", number=1)]
    assert at.number_input(key="vision_block").label == text("vision.block")
    assert at.number_input(key="vision_head").label == text("vision.head")
    assert at.number_input(key="vision_query").label == text("vision.query_patch")
    captions = [c.value for c in at.caption]
    for key in ("grid_caption", "attention_caption", "mrope_caption", "deepstack_caption"):
        assert text(f"vision.{key}") in captions
    assert at.subheader[0].value == text("vision.errata_title")
    assert at.expander[0].label == text("vision.confirmed_title")

    v = vl_trace[1].meta["vision"]
    (h, w), p = v["resized"][0], v["config"]["patch_size"]
    tokens = v["tokens_per_image"][0]
    grid = _chart(at, "grid")
    assert _title(grid) == text("vision.fig_grid", h=h, w=w, gh=h // p, gw=w // p, tokens=tokens)
    assert grid["data"][0]["hovertemplate"] == text("vision.hover_pixel")
    token_map = _chart(at, "tokens")
    assert _title(token_map) == text("vision.fig_tokens")
    assert _title(token_map, "xaxis") == text("vision.axis_patch_col")
    assert _title(token_map, "yaxis") == text("vision.axis_patch_row")
    assert token_map["data"][0]["hovertemplate"] == text("vision.hover_token_map")
    attention = _chart(at, "attention")
    assert _title(attention) == text("vision.fig_attention", block=0, head=0, row=0, col=0)
    assert attention["data"][1]["hovertemplate"] == text("vision.hover_attention")
    assert attention["data"][1]["colorbar"]["title"]["text"] == text("vision.colorbar_attention")
    mrope = _chart(at, "mrope")
    assert (_title(mrope), _title(mrope, "yaxis")) == (text("vision.fig_mrope"), text("vision.axis_mrope"))
    assert mrope["data"][0]["hovertemplate"] == text("vision.hover_mrope")
    mrope_grid = _chart(at, "mrope_grid")
    assert _title(mrope_grid) == text("vision.fig_mrope_grid")
    assert [d["name"] for d in mrope_grid["data"]] == [text("vision.legend_text"), text("vision.legend_image")]
    deepstack = _chart(at, "deepstack")
    assert _title(deepstack) == text("vision.fig_deepstack")
    assert _title(deepstack, "xaxis") == text("vision.axis_decoder_layer")
    assert _title(deepstack, "yaxis") == text("vision.axis_deepstack")
    layers = [i for i in range(int(vl_trace[1].meta["config"]["num_hidden_layers"]))
              if f"layers.{i}.deepstack" in vl_trace[1]]
    assert list(deepstack["data"][0]["x"]) == [text("vision.layer_label", layer=i) for i in layers]


@pytest.mark.parametrize("lang", ["zh-Hans", "zh-Hant"])
def test_vision_page_on_a_text_trace_in_chinese(monkeypatch, tmp_path, lang):
    model = load_model("toy-dense")
    path = str(save_trace(tmp_path / "toy.npz", run_trace(model, [0, 1, 2, 3])))
    at = open_app(monkeypatch, path, lang)
    at.switch_page("views/vision.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == catalog_text("vision.page_title", lang) != catalog_text("vision.page_title", "en")
    assert at.info[0].value == catalog_text("vision.no_vision", lang)
    assert at.button(key="vision_demo").label == catalog_text("vision.demo_button", lang)
    assert at.subheader[0].value == catalog_text("vision.errata_title", lang)
    at.button(key="vision_demo").click().run()
    assert not at.exception, [e.value for e in at.exception]
    question = catalog_text("vision.demo_prompt", lang)
    assert question != catalog_text("vision.demo_prompt", "en")
    assert at.session_state["trace"].meta["prompt"] == PLACEHOLDER + question  # the demo asks in the page's language
    assert len(at.get("plotly_chart")) == 6
