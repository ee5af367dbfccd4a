"""The figure builders, without Streamlit: they draw the recorded numbers, with the right labels."""

import numpy as np
import pytest

pytest.importorskip("plotly")

from tracer import figures  # noqa: E402
from tracer.run import load_model, run_trace  # noqa: E402
from tracer.tracefile import load_trace, save_trace  # noqa: E402


@pytest.fixture(scope="module")
def moe_trace(tmp_path_factory):
    model = load_model("toy-moe")
    return load_trace(save_trace(tmp_path_factory.mktemp("f") / "moe.npz", run_trace(model, [0, 1, 2, 3])))


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    model = load_model("qwen3-0.6b", ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "vocab_size=64",
                                      "intermediate_size=16"])
    return load_trace(save_trace(tmp_path_factory.mktemp("f") / "small.npz",
                                 run_trace(model, [1, 2, 3, 4, 5], max_new_tokens=3)))


def test_record_heatmap_draws_the_record_with_token_labels(moe_trace):
    fig = figures.record_heatmap(moe_trace, "layers.0.moe.gates")
    np.testing.assert_array_equal(np.array(fig.data[0].z), moe_trace["layers.0.moe.gates"])
    assert list(fig.data[0].y) == ["0:<bos>", "1:明天", "2:交", "3:報告"]


def test_attention_figure_blanks_masked_positions(moe_trace):
    fig = figures.attention_figure(moe_trace, 0, 0)
    scores, masked, probs = (np.array(d.z, dtype=float) for d in fig.data)
    np.testing.assert_allclose(scores, moe_trace["layers.0.attn.scores"][0])
    assert np.isnan(masked[0, 1]) and not np.isnan(masked[1, 0])
    np.testing.assert_allclose(probs, moe_trace["layers.0.attn.probs"][0])


def test_gqa_figure_maps_query_heads_to_their_group():
    fig = figures.gqa_figure(16, 8)
    lines = [d for d in fig.data if d.mode == "lines"]
    assert len(lines) == 16
    assert lines[3].y[1] == lines[2].y[1] != lines[4].y[1]  # heads 2 and 3 share KV head 1


def test_rope_angles_are_read_from_the_tables(moe_trace):
    fig = figures.rope_angle_figure(moe_trace)
    angles = np.array(fig.data[0].z, dtype=float)[:, 0]
    expected = np.array([0, -np.pi / 2, np.pi, np.pi / 2])  # seed 004: −90° per position (π and −π are one angle)
    np.testing.assert_allclose(np.exp(1j * angles), np.exp(1j * expected), atol=1e-6)


def test_pipeline_has_a_node_per_prompt_record_and_edges_from_inputs(small_trace):
    fig = figures.pipeline_figure(small_trace)
    nodes = set(fig.data[1].customdata)
    assert "layers.1.attn.probs" in nodes and "logits" in nodes and not any(n.startswith("decode.") for n in nodes)
    assert sum(x is None for x in fig.data[0].x) == sum(
        len([i for i in small_trace.info[n]["inputs"] if i in nodes]) for n in nodes)


def test_expert_load_counts_topk_choices(moe_trace):
    fig = figures.expert_load_figure(moe_trace, 3)
    np.testing.assert_array_equal(np.array(fig.data[0].z)[0], [2, 3, 3])  # seed 004: E0 two tokens, E1/E2 three


def test_topk_equivalence_rows_agree(moe_trace):
    for row in figures.topk_equivalence(moe_trace, 0):
        np.testing.assert_allclose(row["softmax(top-k logits)"], row["renormalised top-k of softmax"], atol=1e-6)


def test_sampling_figure_applies_top_k(small_trace):
    _, probs = figures.sampling_figure(small_trace["sample.0.masked_logits"], 1.0, 5, None)
    assert (probs > 0).sum() == 5 and abs(probs.sum() - 1) < 1e-6


def test_residual_norms_one_point_per_layer(small_trace):
    fig = figures.residual_norms_figure(small_trace)
    expected = np.sqrt(np.mean(small_trace["layers.1.resid_post"][-1].astype(float) ** 2))
    assert len(fig.data[0].y) == 2 and fig.data[0].y[1] == pytest.approx(expected)
