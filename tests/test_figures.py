"""The figure builders, without Streamlit: they draw the recorded numbers, with the right labels."""

import numpy as np
import pytest

pytest.importorskip("plotly")

from tracer.commands.run import load_model, run_trace  # noqa: E402
from tracer.figures import forward as figures  # noqa: E402
from tracer.traces.tracefile import load_trace, save_trace  # noqa: E402


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
    fig = figures.pipeline_figure(small_trace, [0, 1])
    nodes = set(fig.data[1].customdata)
    assert "layers.1.attn.probs" in nodes and not any(n.startswith(("decode.", "sample.")) for n in nodes)
    assert nodes == {n for n in small_trace.names if n.startswith("layers.")}
    assert sum(x is None for x in fig.data[0].x) == sum(
        len([i for i in small_trace.info[n]["inputs"] if i in nodes]) for n in nodes)
    assert list(fig.layout.yaxis.ticktext) == ["layer 0", "layer 1"]
    outer = set(figures.pipeline_figure(small_trace, []).data[1].customdata)
    assert {"tokens", "embed.out", "logits", "sample.0.token_id"} <= outer
    only_one = set(figures.pipeline_figure(small_trace, [1]).data[1].customdata)
    assert only_one == {n for n in nodes if n.startswith("layers.1.")}


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


def test_vocabulary_views_of_151936_tokens_are_fast_and_have_data():
    import time

    rng = np.random.default_rng(0)
    logits = rng.standard_normal(151936) * 3
    logits[[0, 5]] = -3.4e38  # suppressed
    start = time.perf_counter()
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = figures.top_tokens(probs, None, 20)
    fig = figures.vocab_distribution_figure(logits, probs)
    fig.to_json()  # what Streamlit sends
    assert time.perf_counter() - start < 1.0
    assert [i for i, *_ in top] == list(np.argsort(-probs, kind="stable")[:20])
    ranks, values = np.asarray(fig.data[0].x), np.asarray(fig.data[0].y)
    assert ranks[0] == 1 and values[0] == pytest.approx(probs.max()) and np.all(np.diff(values) <= 0)
    assert int(np.sum(fig.data[1].y)) == 151936 - 2  # every finite logit is in one bin
    assert figures.ranks_of(probs, [int(np.argmax(probs)), 0]) == [1, 151935]


def test_large_heatmaps_are_downsampled_not_blank():
    mask = np.triu(np.full((300, 300), -3.4e38), k=1)
    fig = figures.heatmap(mask, title="mask")
    z = np.array(fig.data[0].z, dtype=float)
    assert z.shape == (120, 120) and np.isfinite(z).any() and fig.data[0].zmax > fig.data[0].zmin
    assert "block means" in fig.layout.title.text
    zoom = figures.heatmap(mask, title="mask", region=(10, 20, 0, 30))
    assert np.array(zoom.data[0].z).shape == (10, 30)
    visible = figures.mask_figure(mask, None, None)
    z = np.array(visible.data[0].z, dtype=float)
    assert z[0, -1] < 0.1 and z[-1, 0] == 1.0  # the future masked, the past visible


def test_rope_score_depends_only_on_distance():
    """Checked against rotation matrices built here: pair j of (x[j], x[j+Dh/2]) turns by position × ω_j."""
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 8))
    inv = 1.0 / 10000 ** (np.arange(0, 8, 2) / 8)

    def rotate(x, pos):
        out = x.copy()
        for j, w in enumerate(inv):
            c, s = np.cos(pos * w), np.sin(pos * w)
            out[j], out[j + 4] = c * x[j] - s * x[j + 4], s * x[j] + c * x[j + 4]
        return out

    d = np.arange(0, 40)
    expected = [rotate(q, 7 + dd) @ rotate(k, 7) for dd in d]
    np.testing.assert_allclose(figures.rope_scores_by_distance(q, k, inv, d, 7, 1.0), expected, atol=1e-12)
    np.testing.assert_allclose(figures.rope_scores_by_distance(q, k, inv, d, 500, 1.0), expected, atol=1e-9)


def test_decode_attention_figure_has_every_cached_key(small_trace):
    fig = figures.decode_attention_figure(small_trace, 2, 1, 0)
    probs = small_trace["decode.2.layers.1.attn.probs"][0, -1]
    assert len(fig.data[1].y) == len(probs) == 5 + 2
    np.testing.assert_allclose(fig.data[1].y, probs)


def test_figures_speak_the_language_asked_for(moe_trace):
    assert figures.expert_load_figure(moe_trace, 3, "zh-Hant").layout.title.text == "每個專家分到的 token 數"
    assert figures.expert_load_figure(moe_trace, 3, "zh-Hans").layout.title.text == "每个专家分到的 token 数"
