"""Property tests (hypothesis) on random configs and inputs: the invariants the course teaches."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tracer.engine import ops
from tracer.engine.model import forward, rope_inv_freq
from tracer.engine.recorder import Recorder
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import RandomWeights

finite = st.floats(-30, 30, allow_nan=False, width=64)


@st.composite
def configs(draw, moe: bool | None = None) -> Qwen3Config:
    kv = draw(st.integers(1, 3))
    heads = kv * draw(st.integers(1, 3))
    is_moe = draw(st.booleans()) if moe is None else moe
    experts = draw(st.integers(2, 8)) if is_moe else 0
    layers = draw(st.integers(1, 3))
    return Qwen3Config(
        vocab_size=draw(st.integers(5, 40)), hidden_size=draw(st.sampled_from([4, 8, 12])),
        intermediate_size=draw(st.integers(2, 16)), num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=draw(st.sampled_from([2, 4, 8])),
        max_position_embeddings=64, rope_theta=draw(st.sampled_from([100.0, 10_000.0, 1e6])),
        tie_word_embeddings=draw(st.booleans()), initializer_range=draw(st.sampled_from([0.02, 0.5])),
        num_experts=experts, num_experts_per_tok=draw(st.integers(1, experts)) if is_moe else 0,
        moe_intermediate_size=draw(st.integers(2, 8)) if is_moe else 0, norm_topk_prob=draw(st.booleans()),
        decoder_sparse_step=draw(st.integers(1, 2)) if is_moe else 1,
        mlp_only_layers=tuple(draw(st.lists(st.integers(0, layers - 1), max_size=1, unique=True))) if is_moe else (),
    )


def run(cfg: Qwen3Config, seed: int, length: int) -> dict[str, np.ndarray]:
    rec = Recorder()
    ids = np.random.default_rng(seed).integers(0, cfg.vocab_size, size=length)
    forward(cfg, RandomWeights(cfg, seed), ids, rec)
    return rec.records


@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 9)), elements=finite))
def test_softmax_rows_sum_to_one(x):
    p = ops.softmax(x)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    assert (p >= 0).all()


@settings(max_examples=25, deadline=None)
@given(configs(), st.integers(0, 2**16), st.integers(1, 7))
def test_attention_rows_sum_to_one_and_masked_positions_get_zero(cfg, seed, length):
    records = run(cfg, seed, length)
    for i in range(cfg.num_hidden_layers):
        probs = records[f"layers.{i}.attn.probs"]
        mask = records[f"layers.{i}.attn.mask"]
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
        future = np.triu(np.ones((length, length), dtype=bool), k=1)
        assert (mask[future] < -1e30).all() and (mask[~future] == 0).all()
        assert (probs[:, future] == 0).all()


@given(st.sampled_from([2, 4, 8, 16]), st.floats(10, 1e6), st.integers(0, 500),
       arrays(np.float64, 16, elements=finite))
def test_rope_preserves_vector_norms(head_dim, theta, pos, values):
    x = values[:head_dim].reshape(1, 1, head_dim)
    cos, sin = ops.rope_tables(np.array([pos]), ops.rope_inv_freq(head_dim, theta), np.float64)
    rotated = ops.apply_rope(x, cos, sin)
    np.testing.assert_allclose(np.linalg.norm(rotated), np.linalg.norm(x), rtol=1e-9, atol=1e-9)


@given(st.sampled_from([2, 4, 8]), st.integers(0, 200), st.integers(0, 200), st.integers(0, 200),
       arrays(np.float64, 16, elements=finite))
def test_rope_scores_depend_only_on_relative_position(head_dim, m, n, shift, values):
    q = values[:head_dim].reshape(1, 1, head_dim)
    k = values[8:8 + head_dim].reshape(1, 1, head_dim)
    inv = ops.rope_inv_freq(head_dim, 10_000.0)

    def dot(pq: int, pk: int) -> float:
        cq, sq = ops.rope_tables(np.array([pq]), inv, np.float64)
        ck, sk = ops.rope_tables(np.array([pk]), inv, np.float64)
        return float(np.sum(ops.apply_rope(q, cq, sq) * ops.apply_rope(k, ck, sk)))

    scale = 1 + float(np.sum(np.abs(q)) * np.sum(np.abs(k)))
    assert abs(dot(m, n) - dot(m + shift, n + shift)) <= 1e-9 * scale


def test_toy_rope_is_the_seed_rotation_matrices():
    """Seed 004 §3-5-5 multiplies row p by R_p = [[cos, -sin], [sin, cos]] with 90° per position."""
    cfg = Qwen3Config(vocab_size=6, hidden_size=4, intermediate_size=4, num_hidden_layers=1, num_attention_heads=1,
                      num_key_value_heads=1, head_dim=2, max_position_embeddings=8, rope_degrees_per_position=(-90.0,))
    rows = np.random.default_rng(0).standard_normal((4, 2))
    cos, sin = ops.rope_tables(np.arange(4), rope_inv_freq(cfg), np.float64)
    seed_r = [np.array([[1, 0], [0, 1]]), np.array([[0, -1], [1, 0]]), np.array([[-1, 0], [0, -1]]),
              np.array([[0, 1], [-1, 0]])]
    expected = np.stack([rows[p] @ seed_r[p] for p in range(4)])
    np.testing.assert_allclose(ops.apply_rope(rows[None], cos, sin)[0], expected, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(configs(moe=True), st.integers(0, 2**16), st.integers(1, 6))
def test_moe_gates_have_k_nonzeros_per_row(cfg, seed, length):
    records = run(cfg, seed, length)
    k = cfg.num_experts_per_tok
    sparse = [i for i in range(cfg.num_hidden_layers) if cfg.is_sparse_layer(i)]
    for i in sparse:
        gates = records[f"layers.{i}.moe.gates"]
        assert ((gates != 0).sum(axis=1) == k).all()
        if cfg.norm_topk_prob:
            np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)
        else:
            np.testing.assert_allclose(gates.sum(axis=1), records[f"layers.{i}.moe.topk_weights"].sum(axis=1), rtol=1e-6)
        # the MoE output written out token by token from the weights, without the engine's routing loop (the
        # chosen experts are the engine's: near-ties among tiny router logits may order differently in float64)
        weights, h = RandomWeights(cfg, seed), records[f"layers.{i}.mlp_norm"].astype(np.float64)
        p = f"model.layers.{i}.mlp"
        logits = h @ weights[f"{p}.gate.weight"].T.astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        expected = np.zeros_like(h)
        for t in range(len(h)):
            chosen = records[f"layers.{i}.moe.topk_ids"][t]
            assert probs[t, chosen].min() >= np.sort(probs[t])[-k] - 1e-6  # they are the k most probable
            gate = probs[t, chosen] / probs[t, chosen].sum() if cfg.norm_topk_prob else probs[t, chosen]
            for e, g in zip(chosen, gate):
                wg, wu, wd = (weights[f"{p}.experts.{e}.{m}.weight"].astype(np.float64)
                              for m in ("gate_proj", "up_proj", "down_proj"))
                a, u = h[t] @ wg.T, h[t] @ wu.T
                expected[t] += g * ((a / (1 + np.exp(-a)) * u) @ wd.T)
        np.testing.assert_allclose(records[f"layers.{i}.moe.out"], expected, rtol=1e-4, atol=1e-5)
    for i in set(range(cfg.num_hidden_layers)) - set(sparse):
        assert f"layers.{i}.mlp.act" in records and f"layers.{i}.moe.gates" not in records


@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 10)), elements=finite), st.data())
def test_topk_then_softmax_equals_softmax_topk_renormalise(logits, data):
    k = data.draw(st.integers(1, logits.shape[1]))
    ids, top_logits = ops.top_k(logits, k)
    direct = ops.softmax(top_logits)
    probs = ops.softmax(logits)
    probs_ids, top_probs = ops.top_k(probs, k)
    via_probs = ops.renormalize(top_probs)
    np.testing.assert_allclose(direct, via_probs, rtol=1e-9, atol=1e-12)
    if all(len(np.unique(row)) == row.size for row in probs):  # no ties: the same experts, same order
        np.testing.assert_array_equal(ids, probs_ids)
