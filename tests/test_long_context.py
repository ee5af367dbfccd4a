"""The "Long context" explorer page (AppTest) and the figures it draws from (no Streamlit needed for those)."""

import json

import numpy as np
import pytest

from tracer.commands.run import load_model, run_trace
from tracer.engine.memory import human, memory
from tracer.figures.longctx import distance_scores, errata, pair_table, window_mask
from tracer.i18n import t
from tracer.sources.presets import QWEN3_0_6B
from tracer.traces.tracefile import save_trace

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


def test_pair_regions_and_wavelengths_of_the_notes():
    """Notes §1: pairs 0-23 kept, 24-39 blended, 40-63 divided by 4; pair 23 has wavelength 900.4 (36.4 turns
    in 32768), pair 40 wavelength 35,333 before scaling."""
    rows = pair_table(QWEN3_0_6B.replace(max_position_embeddings=131072, rope_scaling=YARN))
    assert [r.region for r in rows] == ["extrapolated"] * 24 + ["ramp"] * 16 + ["interpolated"] * 24
    assert round(rows[23].wavelength, 1) == 900.4 and round(rows[23].turns_in_window, 1) == 36.4
    assert round(rows[40].wavelength) == 35333 and rows[40].scaled_wavelength == pytest.approx(4 * rows[40].wavelength)


def test_distance_scores_against_the_closed_form():
    """q = k = ones: score = a²·Σ_j 2 cos(Δ ω_j)/√Dh, with ω and a computed here from the notes' formulas."""
    cfg = QWEN3_0_6B.replace(max_position_embeddings=131072, rope_scaling=YARN)
    d = np.array([0, 1, 1000, 50000])
    omega = 1e6 ** (-np.arange(0, 128, 2) / 128)
    low, high = 23, 40  # the notes' truncated correction range
    ramp = np.clip((np.arange(64) - low) / (high - low), 0, 1)
    omega = omega / 4 * ramp + omega * (1 - ramp)
    a = 0.1 * np.log(4) + 1
    expected = a * a * (2 * np.cos(d[:, None] * omega[None, :])).sum(axis=1) / np.sqrt(128)
    np.testing.assert_allclose(distance_scores(cfg, d), expected, rtol=1e-9)


def test_errata_numbers():
    rows = errata("en")
    text = " ".join(r["verdict"] for r in rows)
    for number in ("47,117", "5,063,256", "24 of its 64 pairs", "3.50 GiB", "7.00 GiB", "a² = 1.2965", "24 of the 64"):
        assert number in text
    assert [r["seed"] for r in errata("zh-Hant")][0].startswith("種子文件 000")


def test_window_mask_counts():
    assert ((window_mask(8, 4) == 0).sum(axis=1)).tolist() == [1, 2, 3, 4, 4, 4, 4, 4]
    assert ((window_mask(5, None) == 0).sum(axis=1)).tolist() == [1, 2, 3, 4, 5]


streamlit = pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from tests.apptest import open_explorer  # noqa: E402


def open_page(monkeypatch, trace_path=None, lang=None):
    return open_explorer(monkeypatch, trace_path, "long_context", lang)


def test_page_renders_with_data(monkeypatch):
    at = open_page(monkeypatch)
    assert at.title[0].value == "Long context" and not at.error
    assert len(at.get("plotly_chart")) == 5  # wavelengths, distance, KV, sliding mask, causal mask
    m = memory(QWEN3_0_6B, 131072)
    assert [x.value for x in at.metric] == [human(m.weights), human(m.kv_total), human(m.largest_activation_bytes),
                                            human(m.scores_materialised), human(m.scores_flash)]
    assert len(at.dataframe[0].value) == 5  # errata rows
    at.selectbox[0].set_value("qwen3-8b").run()
    assert at.metric[1].value == human(memory(load_model("qwen3-8b").cfg, 131072).kv_total) == "18.00 GiB"


def test_bad_factor_shows_the_one_line_error(monkeypatch):
    at = open_page(monkeypatch)
    at.number_input[0].set_value(1.0).run()
    assert not at.exception and "rope_scaling.factor" in at.error[0].value


def test_sliding_trace_and_chinese(monkeypatch, tmp_path):
    overrides = ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120",
                 "use_sliding_window=true", "sliding_window=3", "max_window_layers=1",
                 "rope_scaling=" + json.dumps({"rope_type": "yarn", "factor": 2.0,
                                               "original_max_position_embeddings": 8})]
    model = load_model("qwen3-0.6b", overrides)
    path = str(save_trace(tmp_path / "swa.npz", run_trace(model, [1, 2, 3, 4, 5, 6], max_new_tokens=2)))
    at = open_page(monkeypatch, path, lang="zh")
    assert at.title[0].value == t("longctx.page_title", "zh-Hans")
    assert at.selectbox[-1].options == ["layers.1.attn.mask", "decode.1.layers.1.attn.mask"]
    assert any("rope.inv_freq" in c.value for c in at.caption)
