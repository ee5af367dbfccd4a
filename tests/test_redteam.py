"""Regression tests for the red-team review's findings: each bad input gets one line and exit 2."""

from __future__ import annotations

import pytest

from tracer.cli import main

TINY = ["qwen3-0.6b", "--set", "num_hidden_layers=1", "--set", "hidden_size=32", "--set", "head_dim=8",
        "--set", "intermediate_size=16", "--set", "vocab_size=200", "--set", "num_attention_heads=2",
        "--set", "num_key_value_heads=1"]


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
