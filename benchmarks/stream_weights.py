"""Peak memory of the NumPy engine streaming a big bfloat16 checkpoint layer by layer (not run in CI).

Writes a Qwen3-4B-shaped checkpoint (36 layers, hidden 2560, vocabulary 151,936, tied embeddings; about
8 GB of bfloat16 safetensors) with seeded random weights, a tensor at a time so the writer itself stays
small; then, in a fresh process, traces a 32-token prompt with ``load_model(..., stream=True)`` and reports
the peak resident set size (``getrusage`` ru_maxrss) next to the size of the trace it returned.

    PYTHONPATH=. python benchmarks/stream_weights.py --dir /tmp/qwen3-4b-bf16 [--keep] [--layers 36]

Goal (issue 13): peak RSS ≤ 3 GB + the trace.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tracer.sources.checkpoint import bfloat16_bits
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import weight_shapes

QWEN3_4B = dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
SHARD_BYTES = 2 * 1024**3
CHUNK = 1 << 24  # elements generated at a time


def write_checkpoint(directory: Path, cfg: Qwen3Config, seed: int = 0) -> int:
    """bfloat16 safetensors shards written tensor by tensor (header first, then the data in chunks)."""
    directory.mkdir(parents=True, exist_ok=True)
    hf = cfg.to_hf_dict()
    hf["torch_dtype"] = "bfloat16"
    (directory / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in weight_shapes(cfg).items():
        nbytes = int(np.prod(shape)) * 2
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    rng = np.random.default_rng(seed)
    weight_map = {}
    total = 0
    for k, shard in enumerate(shards):
        filename = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in shard:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[name] = filename
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        with open(directory / filename, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
            for name, shape in shard:
                count = int(np.prod(shape))
                for first in range(0, count, CHUNK):
                    m = min(CHUNK, count - first)
                    if name.endswith("norm.weight"):
                        values = np.ones(m, dtype=np.float32)
                    else:
                        values = rng.standard_normal(m, dtype=np.float32)
                        values *= np.float32(cfg.initializer_range)
                    f.write(bfloat16_bits(values).tobytes())
        total += offset
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index) + "\n")
    return total


def measure(directory: str, tokens: int) -> None:
    """In this (fresh) process: stream-trace the checkpoint and print JSON with peak RSS and trace size."""
    from tracer.commands.run import load_model, run_trace

    start = time.perf_counter()
    model = load_model(directory, stream=True)
    ids = [(i * 4099) % 151643 for i in range(tokens)]
    trace = run_trace(model, ids)
    seconds = time.perf_counter() - start
    trace_bytes = sum(trace[n].nbytes for n in trace.names)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"peak_rss_bytes": peak, "trace_bytes": trace_bytes, "seconds": round(seconds, 1),
                      "records": len(trace), "next_token": trace.meta["generated_ids"][0],
                      "finite_logits": bool(np.isfinite(trace["logits"]).all())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/qwen3-4b-bf16")
    parser.add_argument("--layers", type=int, default=36)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.dir, args.tokens)
        return
    directory = Path(args.dir)
    cfg = Qwen3Config(**{**QWEN3_4B, "num_hidden_layers": args.layers})
    if not (directory / "model.safetensors.index.json").is_file():
        t0 = time.perf_counter()
        total = write_checkpoint(directory, cfg)
        print(f"wrote {total / 1e9:.2f} GB of bfloat16 safetensors to {directory} in {time.perf_counter() - t0:.0f} s")
    try:
        out = subprocess.run([sys.executable, __file__, "--measure", "--dir", str(directory), "--tokens",
                              str(args.tokens)], check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    peak, trace = result["peak_rss_bytes"], result["trace_bytes"]
    budget = 3 * 1024**3 + trace
    print(f"{args.layers} layers, {args.tokens} tokens, streamed: peak RSS {peak / 2**30:.2f} GiB, trace "
          f"{trace / 2**30:.2f} GiB, {result['seconds']} s, {result['records']} records, next token "
          f"{result['next_token']}, finite logits {result['finite_logits']}")
    print(f"goal peak RSS ≤ 3 GiB + trace = {budget / 2**30:.2f} GiB: {'met' if peak <= budget else 'NOT met'}")


if __name__ == "__main__":
    main()
