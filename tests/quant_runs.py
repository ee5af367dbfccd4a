"""A small checkpoint, its Q8_0 and Q4_K GGUF files and a trace of each (the Quantization drift page's data)."""

from pathlib import Path

from tracer.cli import main

SMALL = ["num_hidden_layers=3", "hidden_size=256", "head_dim=32", "intermediate_size=512", "vocab_size=512"]
KINDS = ("Q8_0", "Q4_K")


def make_quant_runs(folder: Path) -> Path:
    """Write ``ckpt/``, ``ref.npz`` and ``{kind}.npz`` for each kind into ``folder`` (traced with the checkpoint as
    the reference), and return the folder."""
    sets = [x for s in SMALL for x in ("--set", s)]
    assert main(["export", "qwen3-0.6b", *sets, "--seed", "5", "--out", str(folder / "ckpt")]) == 0
    tokens = ["--tokens", "5,6,7,8,9,10"]
    assert main(["trace", str(folder / "ckpt"), *tokens, "--out", str(folder / "ref.npz")]) == 0
    for kind in KINDS:
        assert main(["quantize", str(folder / "ckpt"), "--type", kind, "--out", str(folder / f"{kind}.gguf")]) == 0
        assert main(["trace", str(folder / f"{kind}.gguf"), *tokens, "--reference", str(folder / "ckpt"),
                     "--out", str(folder / f"{kind}.npz")]) == 0
    return folder
