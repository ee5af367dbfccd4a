"""The explorer's Quantization drift page, and the layer-by-layer drift it plots, on real quantized runs."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
pytest.importorskip("gguf")
from tests.apptest import open_explorer  # noqa: E402

from tests.quant_runs import KINDS, make_quant_runs  # noqa: E402
from tracer.i18n import t  # noqa: E402
from tracer.sources.drift import layer_drift, quant_rows  # noqa: E402
from tracer.traces.tracefile import load_trace  # noqa: E402



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = make_quant_runs(tmp_path_factory.mktemp("drift"))
    return {k: str(folder / f"{k}.npz") for k in ("ref", *KINDS)}


def test_layer_drift_is_the_relative_error_of_each_layer_output(runs):
    ref, q8, q4 = (load_trace(runs[k]) for k in ("ref", "Q8_0", "Q4_K"))
    rows8, rows4 = layer_drift(ref, q8), layer_drift(ref, q4)
    assert [r["stage"] for r in rows8] == ["layers.0.resid_post", "layers.1.resid_post", "layers.2.resid_post",
                                           "logits"]
    a, b = ref["layers.1.resid_post"].astype(np.float64), q8["layers.1.resid_post"].astype(np.float64)
    assert rows8[1]["rel_error"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a))
    # 4.5 bits per weight drift further than 8.5 at every stage
    assert all(r4["rel_error"] > 3 * r8["rel_error"] for r4, r8 in zip(rows4, rows8))
    weights = quant_rows(q4)
    assert len(weights) == 3 * 11 + 2 and {w["bits_per_weight"] for w in weights} == {4.5, 32.0}


def test_quantization_drift_page(monkeypatch, runs, tmp_path_factory):
    monkeypatch.setenv("QWEN3_TRACER_TRACES_DIR", str(tmp_path_factory.getbasetemp()))  # the app's traces folder
    at = open_explorer(monkeypatch, runs["ref"], "quant")
    assert not at.exception and at.title[0].value == "Quantization drift"
    assert "tracer quantize" in at.code[0].value
    at.text_input(key="quant_paths").set_value(f"{runs['Q8_0']}, {runs['Q4_K']}").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1 and len(at.dataframe) == 3
    at.text_input(key="quant_paths").set_value(str(tmp_path_factory.getbasetemp() / "no-such.npz")).run()
    assert not at.exception and "does not exist" in at.error[0].value
    at.text_input(key="quant_paths").set_value("/no/such/trace.npz").run()
    assert not at.exception and "not in the traces folder" in at.error[0].value


@pytest.mark.parametrize("lang", ["zh-Hans", "zh-Hant"])
def test_quantization_drift_page_in_chinese(monkeypatch, runs, tmp_path_factory, lang):
    import json

    def text(key: str, **values) -> str:  # the catalog's text, which must not be the English one
        found = t(key, lang, **values)
        assert found != t(key, "en", **values), key
        return found

    monkeypatch.setenv("QWEN3_TRACER_TRACES_DIR", str(tmp_path_factory.getbasetemp()))
    at = open_explorer(monkeypatch, runs["ref"], "quant", lang)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == text("app.nav_quant")
    assert at.caption[0].value == text("sources.app_reference", name=Path(runs["ref"]).name)
    assert at.text_input(key="quant_paths").label == text("sources.app_paths")
    uploader = next(e for e in at.get("file_uploader") if e.proto.id.endswith("-quant_uploads"))
    assert uploader.proto.label == text("sources.app_upload")
    assert at.info[0].value == text("sources.app_recipe")

    at.text_input(key="quant_paths").set_value(f"{runs['Q8_0']}, {runs['Q4_K']}").run()
    assert not at.exception, [e.value for e in at.exception]
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert fig["layout"]["title"]["text"] == text("sources.app_title")
    assert fig["layout"]["xaxis"]["title"]["text"] == text("sources.drift_axis_stage")
    assert fig["layout"]["yaxis"]["title"]["text"] == text("sources.drift_axis_error")
    assert {d["hovertemplate"] for d in fig["data"]} == {text("sources.drift_hover")}
    assert [s.value for s in at.subheader] == [text("sources.app_drift_table")] + \
        [text("sources.app_weights", name=Path(runs[k]).name) for k in ("Q8_0", "Q4_K")]
    drift, *weights = at.dataframe
    assert list(drift.value.columns) == [text(f"sources.{k}") for k in ("col_trace", "col_stage", "col_rel_error")]
    q8 = load_trace(runs["Q8_0"])
    assert len(drift.value) == 2 * len(layer_drift(load_trace(runs["ref"]), q8))
    columns = [text(f"sources.{k}") for k in ("col_weight", "col_max_abs", "col_mean_abs", "col_rel_frobenius",
                                               "col_bits")]
    assert [list(w.value.columns) for w in weights] == [columns, columns]
    assert len(weights[0].value) == len(quant_rows(q8))

    at.text_input(key="quant_paths").set_value(str(tmp_path_factory.getbasetemp() / "no-such.npz")).run()
    assert not at.exception and at.error[0].value.startswith(text("sources.app_cannot_open", reason=""))
