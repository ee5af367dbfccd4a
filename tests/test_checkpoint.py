"""Checkpoint directories: export, memory-mapped loading (f32 / bf16 / sharded), and clear refusals."""

import json

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.commands.run import load_model, run_trace
from tracer.sources.checkpoint import CheckpointWeights, bfloat16_bits, export_checkpoint, read_config
from tracer.sources.weights import weight_shapes
from tracer.traces.tracefile import load_trace

SMALL = ["--set", "num_hidden_layers=2", "--set", "hidden_size=32", "--set", "head_dim=8",
         "--set", "intermediate_size=48", "--set", "vocab_size=97"]
SMALL_MOE = SMALL + ["--set", "num_experts=6", "--set", "num_experts_per_tok=2", "--set", "moe_intermediate_size=16",
                     "--set", "mlp_only_layers=[0]"]


def export(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["export", "qwen3-0.6b", *extra, "--seed", "7", "--out", str(out)]) == 0
    return out


def trace_records(model_name, *extra, tokens="3,1,4,1,5"):
    overrides = [a for flag, a in zip(extra[::2], extra[1::2]) if flag == "--set"]
    model = load_model(model_name, overrides, seed=7)
    trace = run_trace(model, [int(t) for t in tokens.split(",")], max_new_tokens=3)
    return {name: trace[name] for name in trace.names}, trace.meta


@pytest.mark.parametrize("overrides", [SMALL, SMALL_MOE], ids=["dense", "moe"])
def test_export_then_trace_reproduces_the_preset_exactly(tmp_path, overrides):
    directory = export(tmp_path, "ckpt", *overrides)
    assert json.loads((directory / "config.json").read_text())["model_type"] in ("qwen3", "qwen3_moe")
    from_dir, meta = trace_records(str(directory))
    from_preset, _ = trace_records("qwen3-0.6b", *overrides)
    assert list(from_dir) == list(from_preset)
    for name in from_preset:
        np.testing.assert_array_equal(from_dir[name], from_preset[name], err_msg=name)
    assert meta["source"] == f"checkpoint {directory}"


def test_sharded_export_loads_through_the_index(tmp_path):
    directory = tmp_path / "sharded"
    model = load_model("qwen3-0.6b", SMALL[1::2], seed=7)
    files = export_checkpoint(model.cfg, model.weights, directory, max_shard_bytes=20_000)
    assert len(files) > 1 and (directory / "model.safetensors.index.json").exists()
    loaded = CheckpointWeights(directory, read_config(directory))
    for name in weight_shapes(model.cfg):
        np.testing.assert_array_equal(loaded[name], model.weights[name])


def test_float32_tensors_are_memory_mapped_not_copied(tmp_path):
    directory = export(tmp_path, "f32", *SMALL)
    loaded = CheckpointWeights(directory, read_config(directory))
    w = loaded["model.layers.0.self_attn.q_proj.weight"]
    assert isinstance(w.base, np.memmap) or isinstance(getattr(w.base, "base", None), np.memmap)
    assert not w.flags.writeable


def test_bfloat16_export_widens_exactly(tmp_path):
    directory = export(tmp_path, "bf16", *SMALL, "--dtype", "bfloat16")
    assert json.loads((directory / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = CheckpointWeights(directory, read_config(directory))
    original = load_model("qwen3-0.6b", SMALL[1::2], seed=7).weights
    for name in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight"):
        widened = loaded[name]
        assert widened.dtype == np.float32
        assert (widened.view(np.uint32) & 0xFFFF == 0).all()  # exactly representable in bfloat16
        np.testing.assert_allclose(widened, original[name], rtol=2 ** -8)
    assert loaded.stored_dtypes() == {"BF16"}


def test_bfloat16_rounding_is_to_nearest_even():
    # bfloat16 keeps 7 mantissa bits: the step above 1 is 2^-7. Halfway cases go to the even mantissa,
    # anything above halfway rounds up, anything below rounds down.
    x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -10, 1 + 2 ** -7 + 2 ** -9], dtype=np.float32)
    expected = np.array([1.0, 1 + 2 ** -6, 1 + 2 ** -7, 1 + 2 ** -7], dtype=np.float32)
    widened = (bfloat16_bits(x).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(widened, expected)


def test_transformers_v5_config_spelling(tmp_path):
    directory = export(tmp_path, "v5", *SMALL)
    cfg = json.loads((directory / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg.pop("rope_theta")}
    del cfg["head_dim"]
    cfg["num_attention_heads"], cfg["num_key_value_heads"] = 4, 2  # head_dim = 32 / 4 when missing
    (directory / "config.json").write_text(json.dumps(cfg))
    assert read_config(directory).head_dim == 8


def test_checkpoint_with_real_vocab_ships_tokenizer_and_template(tmp_path, capsys):
    directory = export(tmp_path, "withtok", "--set", "num_hidden_layers=1", "--set", "hidden_size=16",
                       "--set", "head_dim=8", "--set", "intermediate_size=8")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    template = config["chat_template"].replace("<|im_start|>assistant\\n'", "<|im_start|>ASSISTANT\\n'")
    config["chat_template"] = template
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path / "t.npz"
    assert main(["trace", str(directory), "--prompt", "hi", "--chat", "--no-thinking", "--out", str(out)]) == 0
    meta = load_trace(out).meta
    assert meta["prompt"].endswith("<|im_start|>ASSISTANT\n<think>\n\n</think>\n\n")  # the checkpoint's own template
    assert meta["token_ids"][:3] == [151644, 872, 198]


def break_dir(directory, how):
    if how == "missing config":
        (directory / "config.json").unlink()
    elif how == "corrupt config":
        (directory / "config.json").write_text("{not json")
    elif how == "llama":
        cfg = json.loads((directory / "config.json").read_text())
        cfg["model_type"] = "llama"
        (directory / "config.json").write_text(json.dumps(cfg))
    elif how == "pickled":
        (directory / "model.safetensors").unlink()
        (directory / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    elif how == "corrupt weights":
        (directory / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad")
    elif how in ("missing tensor", "misshaped tensor"):
        from safetensors.numpy import load_file, save_file

        tensors = load_file(directory / "model.safetensors")
        if how == "missing tensor":
            del tensors["model.layers.1.self_attn.k_proj.weight"]
        else:
            tensors["model.layers.1.self_attn.k_proj.weight"] = np.zeros((3, 3), dtype=np.float32)
        save_file(tensors, directory / "model.safetensors")


@pytest.mark.parametrize("how, message", [
    ("missing config", "has no config.json"),
    ("corrupt config", "config.json is not valid JSON"),
    ("llama", "model_type 'llama'"),
    ("pickled", "only pickled weights (pytorch_model.bin)"),
    ("corrupt weights", "not a readable safetensors file"),
    ("missing tensor", "lacks tensor model.layers.1.self_attn.k_proj.weight"),
    ("misshaped tensor", "tensor model.layers.1.self_attn.k_proj.weight has shape [3, 3]"),
])
def test_bad_checkpoints_give_one_line(tmp_path, capsys, how, message):
    directory = export(tmp_path, "bad", *SMALL)
    capsys.readouterr()
    break_dir(directory, how)
    code = main(["trace", str(directory), "--tokens", "1,2", "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_missing_directory(capsys, tmp_path):
    assert main(["trace", str(tmp_path / "nowhere"), "--tokens", "1", "--out", str(tmp_path / "x.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["export", "toy-dense", "--out", str(tmp_path / "full")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_read_config_errors():
    with pytest.raises(TracerError):
        read_config(__import__("pathlib").Path("/nonexistent/dir"))
