"""GGUF files: written by tracer quantize / export, read back against the source checkpoint, and refused
cleanly when wrong. Expected values come from the source safetensors checkpoint, the ``gguf`` package's own
dequantizer, Qwen's tiktoken ranks, and a uniform-rounding model of block quantization."""

import json

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from tracer.cli import main  # noqa: E402
from tracer.commands.run import load_model, run_trace  # noqa: E402
from tracer.sources.gguf import TENSOR_NAMES, gguf_name  # noqa: E402
from tracer.sources.kquants import QUANTIZERS  # noqa: E402
from tracer.sources.quantize import write_gguf  # noqa: E402
from tracer.sources.weights import weight_shapes  # noqa: E402
from tracer.traces.tracefile import load_trace  # noqa: E402

DENSE = ["num_hidden_layers=2", "hidden_size=256", "head_dim=32", "intermediate_size=512", "vocab_size=512"]
MOE = DENSE + ["num_experts=8", "num_experts_per_tok=2", "moe_intermediate_size=256"]
IDS = [(i * 37) % 512 for i in range(12)]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module", params=[DENSE, MOE], ids=["dense", "moe"])
def checkpoint(request, tmp_path_factory):
    """An exported safetensors checkpoint: the source every GGUF here is made from."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    sets = [x for s in request.param for x in ("--set", s)]
    assert main(["export", "qwen3-0.6b", *sets, "--seed", "7", "--out", str(folder)]) == 0
    return folder


def logits(model_name):
    return run_trace(load_model(str(model_name)), IDS)["logits"]


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(np.asarray(b, np.float64)))


def test_f32_gguf_gives_the_checkpoints_logits(checkpoint, tmp_path, capsys):
    path = tmp_path / "f32.gguf"
    code, out, _ = run(capsys, "export", checkpoint, "--format", "gguf", "--out", path)
    assert code == 0 and "F32" in out
    assert rel(logits(path), logits(checkpoint)) <= 1e-5
    # the file is what llama.cpp writes: its names and layouts (gguf's own reader, not ours)
    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    assert "blk.1.attn_q_norm.weight" in names and "output.weight" not in names  # Qwen3-0.6B ties the head
    arch = reader.get_field("general.architecture").contents()
    assert arch == ("qwen3moe" if "num_experts" in (checkpoint / "config.json").read_text() else "qwen3")
    token_embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert token_embd.shape.tolist() == [256, 512]  # ne: fastest axis first


def test_the_name_table_is_llama_cpps(checkpoint):
    """Every Hugging Face name maps to the GGUF name gguf's own table gives it."""
    from tracer.sources.config import Qwen3Config

    cfg = Qwen3Config.from_hf_dict(json.loads((checkpoint / "config.json").read_text()))
    arch = gguf.MODEL_ARCH.QWEN3MOE if cfg.is_moe else gguf.MODEL_ARCH.QWEN3
    table = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    for hf in weight_shapes(cfg):
        ours, expert = gguf_name(hf)
        key = hf.removesuffix(".weight")
        if expert is not None:  # gguf's map knows the per-expert HF names with the expert index as "{xid}"
            key = key.replace(f".experts.{expert}.", ".experts.")
        theirs = table.get_name(key)
        assert theirs is not None and f"{theirs}.weight" == ours, hf
    assert len({g for g, _ in TENSOR_NAMES}) == len(TENSOR_NAMES)


def _predicted_rel_error(w, qtype):
    """Uniform-rounding model: per block a step Δ, error ~ U(−Δ/2, Δ/2), RMS Δ/√12; relative to RMS(w).

    Δ is the block's range over its number of levels: max|x|/127 (Q8_0), /16 (Q5_0), /8 (Q4_0), /32 (Q6_K,
    16-value sub-blocks), (max − min)/31 (Q5_1), /15 (Q4_1); K-quants with a minimum use (max − min(min, 0)).
    """
    size = 16 if qtype == "Q6_K" else 32
    blocks = w.reshape(-1, size).astype(np.float64)
    amax = np.abs(blocks).max(axis=1)
    span = blocks.max(axis=1) - blocks.min(axis=1)
    span_k = blocks.max(axis=1) - np.minimum(blocks.min(axis=1), 0)
    step = {"Q8_0": amax / 127, "Q5_0": amax / 16, "Q4_0": amax / 8, "Q5_1": span / 31, "Q4_1": span / 15,
            "Q6_K": amax / 32, "Q5_K": span_k / 31, "Q4_K": span_k / 15}[qtype]
    return float(np.sqrt(np.mean(step ** 2) / 12) / np.sqrt(np.mean(blocks ** 2)))


BITS = {"Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K": 5.5, "Q5_0": 5.5, "Q4_K": 4.5, "Q4_0": 4.5, "Q5_1": 6.0, "Q4_1": 5.0}


@pytest.mark.parametrize("qtype", ["Q8_0", "Q6_K", "Q5_K", "Q5_0", "Q4_K", "Q4_0", "Q5_1", "Q4_1", "F16", "BF16"])
def test_quantized_types_err_as_the_type_implies(checkpoint, tmp_path, capsys, qtype):
    path = tmp_path / f"{qtype}.gguf"
    code, out, _ = run(capsys, "quantize", checkpoint, "--type", qtype, "--out", path)
    assert code == 0 and qtype in out
    trace_path = tmp_path / "q.npz"
    code, _, _ = run(capsys, "trace", path, "--tokens", ",".join(map(str, IDS)), "--reference", checkpoint,
                     "--out", trace_path)
    assert code == 0
    trace = load_trace(trace_path)
    reference = load_model(str(checkpoint))
    worst = 0.0
    for name in weight_shapes(reference.cfg):
        stats = trace[f"quant.{name}.error"]
        w = np.asarray(reference.weights[name])
        if w.ndim == 1 or name.endswith("mlp.gate.weight"):  # norms and the router stay F32
            assert stats.tolist() == [0.0, 0.0, 0.0, 32.0], name
            continue
        if qtype in ("F16", "BF16"):  # unit roundoff 2^-11 / 2^-8 bounds every element's relative error
            bound = 2.0 ** (-11 if qtype == "F16" else -8)
            assert stats[0] <= bound * np.abs(w).max() and stats[2] <= bound and stats[3] == 16.0
        else:
            predicted = _predicted_rel_error(w, qtype)
            assert 0.8 * predicted <= stats[2] <= 1.2 * predicted, (name, stats[2], predicted)
            # and the same numbers as a quantize -> dequantize round trip with gguf's dequantizer (and gguf's
            # own quantizer for the legacy types)
            qt = gguf.GGMLQuantizationType[qtype]
            quantize = QUANTIZERS.get(qtype, lambda x: gguf.quants.quantize(x, qt))
            round_trip = gguf.quants.dequantize(quantize(w.astype(np.float32)), qt)
            np.testing.assert_allclose(stats[0], np.abs(round_trip - w).max(), rtol=1e-6)
            assert stats[3] == BITS[qtype]
        worst = max(worst, stats[2])
    # through two layers the logits drift by a few times the worst weight's error (measured: about 3x)
    assert rel(trace["logits"], logits(checkpoint)) <= 5 * worst


def _random_k_blocks(rows, cols, qtype, rng):
    """Valid K-quant bytes: random codes and scales, the fp16 super-block scales set to small finite values."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    d = np.full((rows, cols // block), 1e-3, dtype=np.float16).view(np.uint8).reshape(rows, cols // block, 2)
    if qtype == gguf.GGMLQuantizationType.Q6_K:
        raw[..., -2:] = d
    elif qtype in (gguf.GGMLQuantizationType.Q2_K,):
        raw[..., -4:-2], raw[..., -2:] = d, d
    elif qtype == gguf.GGMLQuantizationType.Q3_K:
        raw[..., -2:] = d
    else:  # Q4_K, Q5_K: d and dmin first
        raw[..., 0:2], raw[..., 2:4] = d, d
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_K", "Q6_K", "Q3_K", "Q2_K"])
def test_k_quant_tensors_dequantize_as_the_gguf_package_does(tmp_path, kind):
    """K-quant files come from llama-quantize; here a file is written with K-quant bytes directly."""
    model = load_model("qwen3-0.6b", DENSE, seed=7)
    path = tmp_path / "k.gguf"
    write_gguf(model.cfg, model.weights, path, "F32", tokenizer=False)
    reader = gguf.GGUFReader(str(path))
    qt = gguf.GGMLQuantizationType[kind]
    rng = np.random.default_rng(0)
    target = "blk.0.ffn_up.weight"
    writer = gguf.GGUFWriter(str(tmp_path / "k2.gguf"), "qwen3")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, vtype, field.types[-1])
        else:
            writer.add_key_value(key, value, vtype)
    for t in reader.tensors:
        if t.name == target:
            rows, cols = t.data.shape
            blocks = _random_k_blocks(rows, cols, qt, rng)
            writer.add_tensor(t.name, blocks, raw_dtype=qt)
            expected = gguf.quants.dequantize(blocks, qt)
        else:
            writer.add_tensor(t.name, np.array(t.data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    loaded = load_model(str(tmp_path / "k2.gguf"))
    np.testing.assert_array_equal(loaded.weights["model.layers.0.mlp.up_proj.weight"], expected)
    assert loaded.weights.stored_dtypes() == {"F32", kind}
    assert np.isfinite(run_trace(loaded, IDS)["logits"]).all()


def test_export_from_gguf_to_a_checkpoint_round_trips(checkpoint, tmp_path, capsys):
    path = tmp_path / "f32.gguf"
    assert run(capsys, "export", checkpoint, "--format", "gguf", "--out", path)[0] == 0
    back = tmp_path / "back"
    assert run(capsys, "export", path, "--out", back)[0] == 0
    np.testing.assert_array_equal(logits(back), logits(checkpoint))


def test_torch_backend_runs_a_quantized_gguf(tmp_path):
    pytest.importorskip("transformers")
    model = load_model("qwen3-0.6b", DENSE, seed=7)
    path = tmp_path / "q8.gguf"
    write_gguf(model.cfg, model.weights, path, "Q8_0", tokenizer=False)
    q8 = load_model(str(path))
    a = run_trace(q8, IDS, backend="numpy")["logits"]
    b = run_trace(q8, IDS, backend="torch", device="cpu")["logits"]
    assert rel(b, a) < 1e-5


def test_stream_mode_reads_the_same_weights(checkpoint, tmp_path):
    path = tmp_path / "q4.gguf"
    model = load_model(str(checkpoint))
    write_gguf(model.cfg, model.weights, path, "Q4_0", tokenizer=False)
    kept = run_trace(load_model(str(path)), IDS)
    streamed_model = load_model(str(path), stream=True)
    streamed = run_trace(streamed_model, IDS)
    np.testing.assert_array_equal(kept["logits"], streamed["logits"])
    assert streamed_model.weights._made == {}


# --- bad input: one line, exit 2 -------------------------------------------------------------------------

def _one_line_error(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory):
    model = load_model("qwen3-0.6b", DENSE, seed=7)
    path = tmp_path_factory.mktemp("bad") / "ok.gguf"
    write_gguf(model.cfg, model.weights, path, "Q8_0", tokenizer=False)
    return path


def _rewrite(src, dst, arch=None, change=None, drop=()):
    """Copy a GGUF with gguf's own writer, changing the architecture or some metadata values."""
    reader = gguf.GGUFReader(str(src))
    old_arch = reader.get_field("general.architecture").contents()
    new_arch = arch or old_arch
    writer = gguf.GGUFWriter(str(dst), new_arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop:
            continue
        value = (change or {}).get(key, field.contents())
        name = key.replace(f"{old_arch}.", f"{new_arch}.", 1)
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, field.types[0], field.types[-1])
        else:
            writer.add_key_value(name, value, field.types[0])
    for t in reader.tensors:
        writer.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def test_another_architecture_is_refused_by_name(small_gguf, tmp_path, capsys):
    bad = _rewrite(small_gguf, tmp_path / "llama.gguf", arch="llama")
    err = _one_line_error(capsys, "info", bad)
    assert "'llama'" in err and "qwen3, qwen3moe" in err


def test_shapes_contradicting_the_metadata_are_refused(small_gguf, tmp_path, capsys):
    bad = _rewrite(small_gguf, tmp_path / "heads.gguf", change={"qwen3.attention.head_count": 32})
    err = _one_line_error(capsys, "trace", bad, "--tokens", "1,2", "--out", tmp_path / "t.npz")
    assert "blk.0.attn_q.weight" in err and "[512, 256]" in err and "[1024, 256]" in err
    assert not (tmp_path / "t.npz").exists()
    missing = _rewrite(small_gguf, tmp_path / "nokey.gguf", drop=("qwen3.block_count",))
    assert "qwen3.block_count" in _one_line_error(capsys, "info", missing)


def test_truncated_and_lying_headers_are_refused(small_gguf, tmp_path, capsys):
    data = small_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    assert "not a readable GGUF file" in _one_line_error(capsys, "info", cut)
    lying = tmp_path / "lying.gguf"
    lying.write_bytes(data[:8] + (10**9).to_bytes(8, "little") + data[16:])  # a billion tensors
    assert "not a readable GGUF file" in _one_line_error(capsys, "info", lying)
    header_only = tmp_path / "magic.gguf"
    header_only.write_bytes(b"GGUF")
    assert "not a readable GGUF file" in _one_line_error(capsys, "info", header_only)


def test_unknown_quant_types_are_refused(small_gguf, tmp_path, capsys):
    reader = gguf.GGUFReader(str(small_gguf))
    field = reader.tensors[1].field  # the type is the fifth part of a tensor's info row
    type_offset = field.offset + sum(p.nbytes for p in field.parts[:4])
    data = bytearray(small_gguf.read_bytes())
    data[type_offset:type_offset + 4] = (250).to_bytes(4, "little")
    bad = tmp_path / "type250.gguf"
    bad.write_bytes(bytes(data))
    assert "ggml type" in _one_line_error(capsys, "info", bad)
    err = _one_line_error(capsys, "quantize", small_gguf, "--type", "Q7_X", "--out", tmp_path / "x.gguf")
    assert "Q7_X" in err and "Q8_0" in err
    assert not (tmp_path / "x.gguf").exists()


def test_teaching_variants_cannot_become_gguf(tmp_path, capsys):
    err = _one_line_error(capsys, "export", "toy-dense", "--format", "gguf", "--out", tmp_path / "toy.gguf")
    assert "qk_norm" in err
    assert not list(tmp_path.iterdir())


def test_streamed_bf16_checkpoint_matches_the_kept_one(tmp_path, capsys):
    folder = tmp_path / "bf16"
    sets = [x for s in DENSE for x in ("--set", s)]
    assert run(capsys, "export", "qwen3-0.6b", *sets, "--dtype", "bfloat16", "--out", folder)[0] == 0
    kept = load_model(str(folder))
    streamed = load_model(str(folder), stream=True)
    np.testing.assert_array_equal(run_trace(kept, IDS, max_new_tokens=2)["logits"],
                                  run_trace(streamed, IDS, max_new_tokens=2)["logits"])
    assert streamed.weights._made == {} and len(kept.weights._made) > 0
    assert "preset" in _one_line_error(capsys, "trace", "toy-dense", "--stream", "--tokens", "1", "--out",
                                       tmp_path / "t.npz")


def test_reference_errors_of_a_bfloat16_checkpoint(checkpoint, tmp_path, capsys):
    """--reference works for any two sources: a bfloat16 export against its float32 source errs by rounding."""
    bf16 = tmp_path / "bf16"
    assert run(capsys, "export", checkpoint, "--dtype", "bfloat16", "--out", bf16)[0] == 0
    out = tmp_path / "t.npz"
    assert run(capsys, "trace", bf16, "--tokens", "1,2,3", "--reference", checkpoint, "--capture", "quant.*",
               "--capture", "logits", "--out", out)[0] == 0
    trace = load_trace(out)
    stats = trace["quant.model.layers.0.self_attn.q_proj.weight.error"]
    assert stats[3] == 16.0 and 0 < stats[2] <= 2.0 ** -8
    assert set(trace.names) == {"logits"} | {f"quant.{n}.error" for n in weight_shapes(load_model(str(bf16)).cfg)}


def test_yarn_rope_scaling_round_trips_through_gguf_metadata(tmp_path, capsys):
    yarn = '{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":64}'
    sets = [x for s in DENSE + ["max_position_embeddings=256", f"rope_scaling={yarn}"] for x in ("--set", s)]
    path = tmp_path / "yarn.gguf"
    assert run(capsys, "export", "qwen3-0.6b", *sets, "--seed", "7", "--format", "gguf", "--out", path)[0] == 0
    reader = gguf.GGUFReader(str(path))  # llama.cpp's keys, read by gguf's own reader
    assert reader.get_field("qwen3.rope.scaling.type").contents() == "yarn"
    assert reader.get_field("qwen3.rope.scaling.original_context_length").contents() == 64
    source, loaded = load_model("qwen3-0.6b", [s for s in sets if s != "--set"], seed=7), load_model(str(path))
    assert loaded.cfg.rope_scaling == source.cfg.rope_scaling
    ids = list(range(100, 200))  # past the original 64-token window
    np.testing.assert_array_equal(run_trace(loaded, ids)["logits"], run_trace(source, ids)["logits"])
    err = _one_line_error(capsys, "export", "qwen3-0.6b", *sets[:-2], "--set", "use_sliding_window=true",
                          "--format", "gguf", "--out", tmp_path / "swa.gguf")
    assert "use_sliding_window" in err


def test_info_describes_the_gguf_file(small_gguf, capsys):
    code, out, _ = run(capsys, "info", small_gguf)
    assert code == 0 and f"source: GGUF {small_gguf}" in out
    assert "GGUF tensor types: F32 ×9, Q8_0 ×15" in out and "Q8_0 (general.file_type 7)" in out
