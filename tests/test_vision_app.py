"""The explorer's Vision page and its figures, on a qwen3-vl-tiny trace and on a text-only trace."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tracer.i18n import t as catalog_text  # noqa: E402
from tracer.run import encode_prompt, load_model, run_trace  # noqa: E402
from tracer.show import format_record  # noqa: E402
from tracer.tracefile import save_trace  # noqa: E402
from tracer.vision.figures import mrope_grid_figure, patch_attention_figure, to_raster, token_map_figure  # noqa: E402
from tracer.vision.placement import PLACEHOLDER  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "apps" / "explorer.py")
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


def open_app(monkeypatch, path):
    monkeypatch.setenv("QWEN3_TRACER_TRACE", path)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    return at


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
    from tracer.figures import pipeline_figure

    _, trace = vl_trace
    nodes = pipeline_figure(trace).data[1]
    row = dict(zip(nodes.customdata, nodes.y))
    assert row["vision.blocks.0.resid_post"] < row["vision.blocks.3.resid_post"] < row["tokens"] == 0
    assert row["vision.merger.out"] == 0 and row["layers.0.deepstack"] == 1  # DeepStack marked in layer 0's row
    edges = pipeline_figure(trace).data[0]
    assert any(y == row["vision.deepstack.0.out"] for y in edges.y if y is not None)
