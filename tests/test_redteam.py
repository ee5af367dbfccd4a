"""Regression tests for the red-team review's findings: each bad input gets one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.traces.storage import encode_numbers

TINY = ["qwen3-0.6b", "--set", "num_hidden_layers=1", "--set", "hidden_size=32", "--set", "head_dim=8",
        "--set", "intermediate_size=16", "--set", "vocab_size=200", "--set", "num_attention_heads=2",
        "--set", "num_key_value_heads=1"]
TINYV = TINY[:9] + TINY[11:]  # without vocab_size: Qwen3's tokenizer


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Run the CLI, expect exit 2 and one error line containing every word."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tracer: error:") and "\n" not in err, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("device", ["banana", "meta", "", "mps", "cuda", "cuda:0"])
def test_torch_device_checked(device: str, tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    if device.startswith("cuda") and torch.cuda.is_available() or device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has that device")
    refused(["train-step", *TINY, "--tokens", "1,2,3", "--backend", "torch", "--device", device,
             "--out", str(tmp_path / "x.npz")], capsys, "--device")
    refused(["trace", *TINY, "--tokens", "1,2,3", "--backend", "torch", "--device", device,
             "--out", str(tmp_path / "x.npz")], capsys, "--device")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("std", ["[0,0,0]", "[NaN,1,1]", "[1,1,-1]", "[Infinity,1,1]"])
def test_vision_std_must_be_positive_finite(std: str, tmp_path, capsys) -> None:
    refused(["trace", "qwen3-vl-tiny", "--set", f"vision.image_std={std}", "--prompt", "hi",
             "--out", str(tmp_path / "v.npz")], capsys, "vision.image_std")
    refused(["trace", "qwen3-vl-tiny", "--set", "vision.image_mean=[NaN,0,0]", "--prompt", "hi",
             "--out", str(tmp_path / "v.npz")], capsys, "vision.image_mean")


def test_training_overflow_refused(tmp_path, capsys) -> None:
    out = tmp_path / "s.npz"
    refused(["train-step", *TINY, "--tokens", "1,2,3", "--optimizer", "sgd", "--lr", "1e300", "--out", str(out)],
            capsys, "not finite", "--lr")
    pair = tmp_path / "p.json"
    pair.write_text(json.dumps({"prompt": "Q: 2+2?", "chosen": " 4", "rejected": " 5"}))
    refused(["train-step", *TINYV, "--dpo", str(pair), "--beta", "1e308", "--out", str(out)], capsys, "--beta")
    group = tmp_path / "g.json"
    group.write_text(json.dumps({"prompt": "Q", "completions": [{"text": " a", "reward": 1e308},
                                                                {"text": " b", "reward": -1e308}]}))
    refused(["train-step", *TINYV, "--grpo", str(group), "--out", str(out)], capsys, "reward")
    assert not out.exists()


def test_float16_overflow_refused() -> None:
    value = np.array([1.0, 7e4], dtype=np.float32)
    with pytest.raises(TracerError, match=r"layers\.0\.x .*bfloat16"):
        encode_numbers(value, "float16", "layers.0.x")
    mask = np.array([0.0, np.finfo(np.float32).min], dtype=np.float32)  # a mask's −∞ stand-in may become −∞
    planes, note = encode_numbers(mask, "float16", "mask")
    assert note["dtype"] == "float16"
    assert encode_numbers(value, "bfloat16", "layers.0.x")[1]["dtype"] == "bfloat16"


def test_ollama_odd_blobs_and_names(tmp_path, capsys) -> None:
    from tracer.sources.ollama import _text, sampling_defaults

    blob = tmp_path / "sha256-x"
    blob.write_bytes(b"\xff\xfe not UTF-8")
    with pytest.raises(TracerError, match="not UTF-8"):
        _text(blob, "system")
    for value in (json.loads('{"top_k": 1e400}'), {"temperature": float("nan")}):
        with pytest.raises(TracerError, match="unusable value"):
            sampling_defaults(value)
    refused(["info", "ollama:qwen3:"], capsys, "empty tag")


@pytest.mark.parametrize("flag", ["--messages", "--dpo", "--grpo"])
def test_json_input_directory_refused(flag: str, tmp_path, capsys) -> None:
    refused(["train-step", *TINYV, flag, str(tmp_path), "--out", str(tmp_path / "x.npz")], capsys, "is a folder")


def test_messages_name_what_is_wrong(tmp_path, capsys) -> None:
    refused(["info", "banana"], capsys, "qwen3-vl-tiny", "qwen3-vl-2b", "FILE.gguf", "hf:ORG/NAME",
                  "ollama:NAME")
    (tmp_path / "d.npz").mkdir()
    assert "does not exist" not in refused(["show", str(tmp_path / "d.npz")], capsys, "folder")


def test_vision_language_models_not_gguf_nor_trained(tmp_path, capsys) -> None:
    refused(["export", "qwen3-vl-tiny", "--format", "gguf", "--out", str(tmp_path / "e.gguf")], capsys, "GGUF")
    refused(["quantize", "qwen3-vl-tiny", "--type", "Q8_0", "--out", str(tmp_path / "q.gguf")], capsys, "GGUF")
    refused(["train-step", "qwen3-vl-tiny", "--tokens", "1,2,3", "--out", str(tmp_path / "x.npz")], capsys,
            "cannot be trained")
    assert not list(tmp_path.iterdir())


def test_quantize_refuses_when_no_tensor_fits_a_block(tmp_path, capsys) -> None:
    pytest.importorskip("gguf")
    out = tmp_path / "q.gguf"
    refused(["quantize", *TINY, "--type", "Q4_K", "--out", str(out)], capsys, "token_embd.weight", "256")
    assert not out.exists()
    assert main(["quantize", *TINY, "--type", "Q8_0", "--out", str(out)]) == 0
    assert "blk.0.ffn_down.weight" in capsys.readouterr().err  # rows of 16: kept in F32, and said so


def test_memory_counts_the_vision_tower(capsys) -> None:
    assert main(["info", "qwen3-vl-tiny"]) == 0
    card = capsys.readouterr().out
    total = int(card.split("total with the text model: ")[1].split()[0].replace(",", ""))
    assert main(["info", "qwen3-vl-tiny", "--context", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] == total


def test_no_rendered_message_shows_doubled_braces() -> None:
    import string

    from tracer.i18n import LANGS, catalog, t

    for lang in LANGS:
        for key, value in catalog(lang).items():
            fields = {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(value) if f}
            text = t(key, lang, **{f: 1 for f in fields})
            assert "{{" not in text and "}}" not in text, (lang, key, text)
    with pytest.raises(TracerError) as exc:
        from tracer.commands.train_run import sft_segments

        sft_segments("not a list")
    assert "{role, content}" in str(exc.value)
