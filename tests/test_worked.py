"""Redo any cell by hand: for every op kind, the worked cell gives the recorded value.

The worked arithmetic is redone in float64 from the recorded inputs and the checkpoint's parameters (read one
row at a time); the recorded values come from the engine's vectorised ops, so agreement checks both.
"""

import itertools

import numpy as np
import pytest

from tracer.commands.run import load_model, run_trace
from tracer.engine.model import Sampling
from tracer.sources import seed004
from tracer.teaching.worked import WORKERS, Params, num, work_cell  # noqa: F401


def _cells(shape, rng, limit):
    shape = [min(n, 4096) for n in shape]  # vocabulary columns: the low ids (the last row is checked on its own)
    every = list(itertools.product(*[range(n) for n in shape]))
    if len(every) <= limit:
        return every
    picks = [every[0], every[-1]] + [every[int(i)] for i in rng.integers(len(every), size=limit - 2)]
    return picks


def _check(trace, limit, seen):
    rng = np.random.default_rng(0)
    for name in trace.names:
        if trace.info[name]["op"] not in WORKERS:  # analyses recorded beside the pass (logit lens, attribution)
            continue
        value = np.asarray(trace[name])
        for cell in _cells(value.shape, rng, limit):
            worked = work_cell(trace, name, cell)
            seen.add(trace.info[name]["op"])
            if worked.recorded < -1e30:
                assert worked.value < -1e30, (name, cell)
            else:
                assert worked.value == pytest.approx(worked.recorded, rel=2e-4, abs=2e-5), (name, cell, worked.lines)
            assert num(worked.value) in "\n".join(worked.lines), (name, cell)


@pytest.fixture(scope="module")
def seen():
    ops: set[str] = set()
    yield ops
    missing = set(WORKERS) - ops
    assert not missing, f"op kinds never worked: {sorted(missing)}"


def test_every_cell_of_the_toy_traces(seen):
    for name in ("toy-dense", "toy-moe"):
        model = load_model(name)
        _check(run_trace(model, [0, 1, 2, 3], max_new_tokens=3), 10_000, seen)


def test_full_size_qwen3_cells_with_sampling_and_lazy_weights(seen, monkeypatch):
    from tracer.sources import weights

    model = load_model("qwen3-0.6b", ["num_hidden_layers=1"])
    trace = run_trace(model, [5, 100, 2000], max_new_tokens=2,
                      sampling=Sampling(0.8, 50, 0.9, (151643,), seed=3))

    def refuse(self, name):
        raise AssertionError(f"{name} loaded whole")

    monkeypatch.setattr(weights.RandomWeights, "__getitem__", refuse)  # the worked cells read rows only
    _check(trace, 3, seen)
    worked = work_cell(trace, "logits", (2, 151935))  # the last row of the 622 MB embedding table
    assert worked.value == pytest.approx(worked.recorded, rel=1e-4, abs=1e-6)
    assert worked.params == [("model.embed_tokens.weight", (151936, 1024))]


def test_full_size_moe_cells(seen):
    model = load_model("qwen3-30b-a3b", ["num_hidden_layers=1", "vocab_size=512", "norm_topk_prob=false"])
    _check(run_trace(model, [1, 2]), 2, seen)


def test_the_seed_documents_numbers_by_hand():
    trace = run_trace(load_model("toy-dense"), [0, 1, 2, 3])
    probs = work_cell(trace, "layers.0.attn.probs", (0, 1, 1))
    assert round(probs.value, 3) == seed004.DENSE["layers.0.attn.probs"][1, 1]  # 0.770
    assert probs.lines[-1].endswith("= 0.7698")
    q = work_cell(trace, "layers.0.attn.q_proj", (0, 3, 0))
    assert q.value == pytest.approx(seed004.DENSE["layers.0.attn.q_proj"][3, 0])  # row 報告: 0·1 + 0·0 + 2·1 + 0·0
    assert "0·1 + 0·0 + 2·1 + 0·0" in q.lines[-2]
    f = work_cell(trace, "layers.0.mlp.act", (0, 3))
    assert round(f.value, 3) == seed004.DENSE["layers.0.mlp.act"][0, 3]  # 3.383


def test_long_sums_are_folded_and_parameters_named():
    model = load_model("qwen3-0.6b", ["num_hidden_layers=1", "vocab_size=1000"])
    trace = run_trace(model, [1, 2])
    q = work_cell(trace, "layers.0.attn.q_proj", (3, 1, 5))
    assert "+ … +" in q.lines[-2] and q.lines[-2].count("·") == 5
    assert q.params == [("model.layers.0.self_attn.q_proj.weight", (2048, 1024))]
    row = Params(trace.meta).row("model.layers.0.self_attn.q_proj.weight", 3 * 128 + 5)
    np.testing.assert_array_equal(row, model.weights["model.layers.0.self_attn.q_proj.weight"][3 * 128 + 5])


def test_bad_cells_are_one_line_errors():
    from tracer import TracerError

    trace = run_trace(load_model("toy-dense"), [0, 1])
    with pytest.raises(TracerError, match="outside the record's shape"):
        work_cell(trace, "layers.0.attn.probs", (0, 5, 0))


def test_long_context_cells_yarn_and_sliding_window(seen):
    """RoPE scaling (ω and the factor a on cos and sin) and a sliding-window layer, with decode steps."""
    tiny = ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "num_attention_heads=4", "num_key_value_heads=2",
            "intermediate_size=16", "vocab_size=64", "max_position_embeddings=64", "use_sliding_window=true",
            "sliding_window=3", "max_window_layers=1",
            'rope_scaling={"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":16}']
    model = load_model("qwen3-0.6b", tiny)
    trace = run_trace(model, [1, 2, 3, 4, 5], max_new_tokens=3)
    assert float(trace["rope.attention_factor"]) != 1.0
    _check(trace, 12, seen)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_checkpoint_rows_are_read_by_memory_map(tmp_path, dtype):
    from tracer.sources.checkpoint import export_checkpoint

    small = ["num_hidden_layers=1", "hidden_size=32", "head_dim=8", "intermediate_size=16", "vocab_size=300"]
    source = load_model("qwen3-0.6b", small, seed=5)
    export_checkpoint(source.cfg, source.weights, tmp_path / "ckpt", dtype, tokenizer=False)
    model = load_model(str(tmp_path / "ckpt"))
    trace = run_trace(model, [3, 1, 4])
    for name, cell in (("layers.0.attn.q_proj", (3, 2, 5)), ("logits", (1, 299)), ("layers.0.mlp.down_proj", (0, 31))):
        worked = work_cell(trace, name, cell)
        assert worked.value == pytest.approx(worked.recorded, rel=1e-5, abs=1e-6), (name, worked.lines)
    row = Params(trace.meta).row("model.layers.0.mlp.up_proj.weight", 7)
    np.testing.assert_array_equal(row, model.weights["model.layers.0.mlp.up_proj.weight"][7])
