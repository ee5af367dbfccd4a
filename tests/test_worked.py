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
    """Corner cells and random ones of every record: the worked value is the recorded one (read from the trace)."""
    rng = np.random.default_rng(0)
    params = Params(trace.meta)
    for name in trace.names:
        assert trace.info[name]["op"] in WORKERS, f"{name}: no worked cell for op {trace.info[name]['op']}"
        value = np.asarray(trace[name])
        for cell in _cells(value.shape, rng, limit):
            worked = work_cell(trace, name, cell, params)
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


# --- the record kinds added after the text forward: vision, training step, logit lens and attribution ----------

TINY = ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120",
        "num_attention_heads=4", "num_key_value_heads=2"]
TINY_MOE = TINY + ["num_experts=6", "num_experts_per_tok=2", "moe_intermediate_size=16", "mlp_only_layers=[1]",
                   "norm_topk_prob=false"]
PAIR = {"prompt": "明天", "chosen": "交報告", "rejected": "請"}
GROUP = {"prompt": "明天", "completions": [{"text": "交報告", "reward": 1}, {"text": "請", "reward": 0},
                                         {"text": "交", "reward": 0.5}]}


def _images():
    """Two generated images: 50×40 is enlarged to 96×64, 150×200 shrunk to 96×128 (both bicubic passes)."""
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (50, 40, 3)).astype(np.uint8), rng.integers(0, 256, (150, 200, 3)).astype(np.uint8)]


def _vl_trace(model, images, steps=2):
    from tracer.commands.run import encode_prompt
    from tracer.vision.placement import PLACEHOLDER

    ids = encode_prompt(model, "A " + " and ".join([PLACEHOLDER] * len(images)) + "?")
    return run_trace(model, ids, images=images, max_new_tokens=steps)


@pytest.fixture(scope="module")
def new_traces():
    """One trace of every kind the text-forward tests do not cover, on toy and tiny models."""
    pytest.importorskip("PIL")
    from tracer.engine.train import Optimizer
    from tracer.commands.train_run import dpo_step, grpo_step, train_step

    vl = load_model("qwen3-vl-tiny")
    windowed = load_model("qwen3-vl-tiny", ["vision.window_size=64", "vision.fullatt_block_indexes=[1]"], seed=4)
    tiny = load_model("qwen3-0.6b", TINY, seed=3)
    ids = [5, 17, 3, 99, 42, 7, 17, 3]
    return {
        "vision": _vl_trace(vl, _images()),
        "vision-windows": _vl_trace(windowed, [np.random.default_rng(7).integers(0, 256, (96, 128, 3), np.uint8)],
                                    steps=1),
        "train-dense-sgd": train_step(load_model("toy-dense"), [0, 1, 2, 3, 4], optimizer=Optimizer("sgd", 0.1, 0.01)),
        # MoE: load balancing, renormalised top-k, ReLU experts, a router bias; AdamW
        "train-moe-adamw": train_step(load_model("toy-moe"), [0, 1, 2, 3, 4], optimizer=Optimizer("adamw", 0.1, 0.01)),
        "train-moe-2-steps": train_step(load_model("toy-moe"), [0, 1, 2, 3, 4], optimizer=Optimizer("sgd", 0.1),
                                        steps=2),
        # RMS QK-norm, a final norm, grouped queries; raw top-k weights and SwiGLU experts
        "train-tiny": train_step(tiny, ids, optimizer=Optimizer("adamw", 0.01)),
        "train-tiny-moe": train_step(load_model("qwen3-0.6b", TINY_MOE, seed=3), ids),
        "dpo": dpo_step(load_model("toy-dense"), PAIR),
        "grpo": grpo_step(load_model("toy-dense"), GROUP),
        "lens-dense": run_trace(load_model("toy-dense"), [0, 1, 2, 3], max_new_tokens=2, capture=["*"]),
        "lens-moe": run_trace(load_model("toy-moe"), [0, 1, 2, 3], max_new_tokens=2, capture=["*"]),
        # two blocks: block 0's lens goes through the final norm and the LM head, recorded or not
        "lens-tiny": run_trace(tiny, [5, 17, 3, 99], max_new_tokens=2),
        "lens-tiny-captured": run_trace(tiny, [5, 17, 3, 99], max_new_tokens=2, capture=["*"]),
    }


def _varied_checkpoint(path, overrides):
    """A tiny Qwen3 saved as a checkpoint with norm weights away from 1 (the random weights' are all ones, which
    would hide a worked cell forgetting them)."""
    from tracer.sources.checkpoint import export_checkpoint

    model = load_model("qwen3-0.6b", overrides, seed=3)
    rng = np.random.default_rng(2)
    weights = {n: (model.weights[n] * (1 + 0.3 * rng.standard_normal(model.weights[n].shape))).astype(np.float32)
               if n.endswith("norm.weight") else model.weights[n] for n in model.weights}
    export_checkpoint(model.cfg, weights, path, "float32", tokenizer=False)
    return load_model(str(path))


def test_every_op_kind_of_the_schema_has_a_worked_cell():
    from tracer.traces.schema import OPS

    assert set(OPS) <= set(WORKERS), sorted(set(OPS) - set(WORKERS))


def test_no_record_of_the_new_traces_is_left_without_a_worked_cell(new_traces):
    for kind, trace in new_traces.items():
        left = [n for n in trace.names if trace.info[n]["op"] not in WORKERS]
        assert not left, (kind, left)
    names = {n for trace in new_traces.values() for n in trace.names}
    assert {"vision.images.0.resized", "vision.window_ids", "embed.spliced", "layers.0.deepstack",
            "decode.1.rope.position_ids", "grad.layers.0.moe.router_probs", "update.param.model.layers.0.self_attn"
            ".q_proj.weight", "dpo.rejected.token_logp", "grpo.2.token_loss", "lens.0.logits", "attrib.0.experts",
            "decode.1.attrib.0.heads"} <= names


def test_vision_cells_on_preset_weights_read_one_row_at_a_time(seen, new_traces, monkeypatch):
    from tracer.vision.weights import VLRandomWeights

    def refuse(self, name):
        raise AssertionError(f"{name} loaded whole")

    monkeypatch.setattr(VLRandomWeights, "__getitem__", refuse)
    _check(new_traces["vision"], 6, seen)
    _check(new_traces["vision-windows"], 6, seen)
    trace = new_traces["vision"]
    resized = work_cell(trace, "vision.images.1.resized", (50, 70, 2))
    assert resized.lines[-1].startswith("resized[50,70,2] = ⌊(") and "(y = 76…81)" in resized.lines[-1]
    rope = work_cell(trace, "rope.position_ids", (2, 20), lang="zh-Hant")  # token 20: image 1, merged row 1, col 3
    assert rope.value == rope.recorded == 13 and "圖片 1" in rope.lines[0]


def test_vision_cells_from_a_checkpoint_with_norm_weights_and_biases(seen, tmp_path):
    """Non-trivial LayerNorm weights and biases (the presets' are ones and zeros), read by memory map; the text
    tensors are stored under Qwen3-VL's model.language_model. names."""
    import json

    pytest.importorskip("PIL")
    from tracer.sources.checkpoint import export_checkpoint
    from tracer.vision.config import to_hf_dict
    from tracer.vision.weights import vl_weight_shapes

    model = load_model("qwen3-vl-tiny")
    rng = np.random.default_rng(1)
    weights = {}
    for name, shape in vl_weight_shapes(model.cfg, model.vision).items():
        base = 1.0 if "norm" in name and "linear" not in name else 0.0
        scale = 0.02 if "embed_tokens" in name else 0.1
        weights[name] = (base + scale * rng.standard_normal(shape)).astype(np.float32)
    export_checkpoint(model.cfg, weights, tmp_path / "vl", "float32", tokenizer=False,
                      shapes=vl_weight_shapes(model.cfg, model.vision), hf_config=to_hf_dict(model.cfg, model.vision))
    (tmp_path / "vl" / "preprocessor_config.json").write_text(json.dumps(model.vision.preprocessor_dict()))
    trace = _vl_trace(load_model(str(tmp_path / "vl")), _images()[:1])
    _check(trace, 5, seen)
    qkv = work_cell(trace, "vision.blocks.2.attn.qkv", (3, 70))
    bias = float(weights["model.visual.blocks.2.attn.qkv.bias"][70])
    assert bias != 0 and "+ b[70] = " in qkv.lines[-1] and num(bias, True) in qkv.lines[-1]
    assert ("model.visual.blocks.2.attn.qkv.weight", (192, 64)) in qkv.params


def test_training_step_cells(seen, new_traces):
    for kind in ("train-dense-sgd", "train-moe-adamw", "train-moe-2-steps", "train-tiny", "train-tiny-moe"):
        _check(new_traces[kind], 40 if kind.startswith("train-dense") or "moe-" in kind else 8, seen)
    trace = new_traces["train-moe-adamw"]
    probs = work_cell(trace, "grad.layers.0.moe.router_probs", (1, 2))  # through the renormalised top-k, plus aux
    assert any("load-balancing" in line for line in probs.lines) and "(w = P[ids] / Σ P[ids])" in probs.lines[1]
    later = work_cell(new_traces["train-moe-2-steps"], "update.param.model.layers.0.self_attn.q_proj.weight", (1, 2))
    assert "the sum of 2 steps" in later.lines[-1]


def test_training_step_cells_with_norm_weights_from_a_checkpoint(seen, tmp_path):
    from tracer.commands.train_run import train_step

    model = _varied_checkpoint(tmp_path / "ckpt", TINY)
    trace = train_step(model, [5, 17, 3, 99, 42, 7])
    _check(trace, 6, seen)
    norm = work_cell(trace, "grad.param.model.layers.1.self_attn.k_norm.weight", (3,))
    assert norm.lines[1].startswith("via layers.1.attn.k_norm (rms_norm): Σ_rows")


def test_dpo_and_grpo_cells(seen, new_traces):
    _check(new_traces["dpo"], 12, seen)
    _check(new_traces["grpo"], 12, seen)
    dpo = new_traces["dpo"]
    assert work_cell(dpo, "train.loss", ()).value == pytest.approx(np.log(2))  # reference = policy at the start
    rejected = work_cell(dpo, "dpo.rejected.token_logp", (1,))
    assert "not kept in the trace" in rejected.lines[0]
    grad = work_cell(dpo, "grad.param.model.layers.0.self_attn.q_proj.weight", (0, 1))
    assert "the other sequences' passes" in grad.lines[-1]  # the rejected answer's pass adds the rest


def test_logit_lens_and_attribution_cells(seen, new_traces):
    for kind in ("lens-dense", "lens-moe", "lens-tiny", "lens-tiny-captured"):
        _check(new_traces[kind], 12, seen)
    tiny = new_traces["lens-tiny"]
    assert tiny.info["lens.0.top_probs"]["inputs"][-1] == "model.embed_tokens.weight"  # not captured: redone
    top = work_cell(tiny, "lens.0.top_probs", (2, 0))
    assert top.params == [("model.norm.weight", (32,)), ("model.embed_tokens.weight", (120, 32))]
    total = sum(work_cell(tiny, n, cell).value for n, cell in
                [("attrib.embed", (3,))] + [(f"attrib.{i}.heads", (h, 3)) for i in range(2) for h in range(4)]
                + [(f"attrib.{i}.mlp", (3,)) for i in range(2)])
    target = int(tiny["attrib.target_ids"][3])
    assert total == pytest.approx(float(tiny["logits"][3, target]), rel=1e-4)


def test_logit_lens_and_attribution_through_final_norm_weights(seen, tmp_path):
    model = _varied_checkpoint(tmp_path / "ckpt", TINY)
    _check(run_trace(model, [5, 17, 3, 99], max_new_tokens=2), 6, seen)


def test_quantization_error_cells_say_where_the_numbers_come_from(seen):
    from tracer.sources.quantize import with_quant_errors

    small = ["num_hidden_layers=1", "hidden_size=32", "head_dim=8", "intermediate_size=16", "vocab_size=64"]
    model, reference = load_model("qwen3-0.6b", small, seed=1), load_model("qwen3-0.6b", small, seed=2)
    trace = with_quant_errors(run_trace(model, [1, 2]), model, reference, ["quant.*q_proj*"])
    _check(trace, 4, seen)
    bits = work_cell(trace, "quant.model.layers.0.self_attn.q_proj.weight.error", (3,))
    assert bits.value == 32 and "model.layers.0.self_attn.q_proj.weight" in bits.lines[0]


def test_rows_columns_and_blocks_read_the_random_weights(monkeypatch):
    """Rows far into a stream, columns and blocks of rows (small chunks, so the stream is walked in pieces) equal
    the weights the model computed with, for the vision tower's 5-axis kernel and the text tensors."""
    from tracer.teaching import worked_core

    monkeypatch.setattr(worked_core, "CHUNK", 1000)
    small = ["vocab_size=300", "num_hidden_layers=1", "vision.depth=1", "vision.deepstack_visual_indexes=[0]"]
    ids = [f"vision.{k}_token_id={v}" for k, v in (("image", 290), ("video", 291), ("vision_start", 292),
                                                    ("vision_end", 293))]
    model = load_model("qwen3-vl-tiny", small + ids)
    params = Params({"config": model.cfg.as_dict(), "model": model.name, "seed": model.seed,
                     "vision": {"config": {k: list(v) if isinstance(v, tuple) else v
                                           for k, v in model.vision.__dict__.items()}}})
    kernel = "model.visual.patch_embed.proj.weight"
    flat = model.weights[kernel].reshape(model.weights[kernel].shape[0], -1)
    np.testing.assert_array_equal(params.row(kernel, 37), flat[37])
    np.testing.assert_array_equal(params.column(kernel, 700), flat[:, 700])
    head = "model.embed_tokens.weight"
    table = model.weights["model.language_model.embed_tokens.weight"]  # Qwen3-VL's name of the text tensor
    np.testing.assert_array_equal(np.concatenate([b for _, b in params.blocks(head)]), table)
    np.testing.assert_array_equal(params.column(head, 63), table[:, 63])
    handed_out = params.row(head, 299)
    handed_out[:] = 0  # a copy: changing it changes nothing kept
    np.testing.assert_array_equal(params.row(head, 299), table[299])
    np.testing.assert_array_equal(params.row("model.visual.blocks.0.norm1.weight", 0), np.ones(64))
    np.testing.assert_array_equal(params.row("model.visual.blocks.0.attn.qkv.bias", 0), np.zeros(192))
