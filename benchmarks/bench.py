"""Speed and memory of the NumPy engine on Qwen3-0.6B (seeded random weights, CPU, float32).

Prints prefill time for 32 and 256 tokens, per-token decode time with the KV cache, the same fully traced,
and the ratio of decode time to the memory-bandwidth bound (weight bytes read per token / measured read
bandwidth). All ratios come from one run of this script. ``--json`` prints ``{case: {engine: seconds}}``.

    python benchmarks/bench.py [--repeats 5] [--layers 28] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from tracer.model import KVCache, forward
from tracer.presets import QWEN3_0_6B
from tracer.recorder import Recorder
from tracer.weights import RandomWeights


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: BLAS threads, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second the machine streams from memory: best of a reduction and a matrix-vector product."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    m = a.reshape(-1, 4096)
    v = np.ones(4096, dtype=np.float32)
    best = min(median_time(lambda: a.sum(), repeats), median_time(lambda: m @ v, repeats))
    return nbytes / best


def decode_step_time(cfg, weights, capture: list[str] | None, prompt: np.ndarray, steps: int) -> float:
    """Median seconds of one decode step after a prefill, with the cache."""
    cache = KVCache.empty(cfg.num_hidden_layers)
    rec = Recorder(capture=capture)
    forward(cfg, weights, prompt, rec, cache)
    times = []
    token = prompt[-1:]
    for step in range(1, steps + 1):
        start = time.perf_counter()
        logits = forward(cfg, weights, token, rec.scoped(f"decode.{step}."), cache)
        times.append(time.perf_counter() - start)
        token = np.array([int(np.argmax(logits[-1]))])
    return statistics.median(times)


def weight_bytes_per_token(cfg, weights) -> int:
    """Bytes a decode step reads: every weight once (the tied embedding table as the LM head)."""
    return sum(weights[name].nbytes for name in weights)


def run(layers: int, repeats: int) -> dict[str, dict[str, float]]:
    cfg = QWEN3_0_6B.replace(num_hidden_layers=layers)
    weights = RandomWeights(cfg, seed=0)
    for name in weights:
        weights[name]
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {}
    for length in (32, 256):
        prompt = rng.integers(0, cfg.vocab_size, size=length)
        results[f"prefill{length}"] = {
            "numpy": median_time(lambda: forward(cfg, weights, prompt, Recorder(capture=[])), repeats),
            "numpy_traced": median_time(lambda: forward(cfg, weights, prompt, Recorder()), repeats),
        }
    prompt = rng.integers(0, cfg.vocab_size, size=32)
    results["decode"] = {
        "numpy": decode_step_time(cfg, weights, [], prompt, max(repeats, 5)),
        "numpy_traced": decode_step_time(cfg, weights, None, prompt, max(repeats, 5)),
    }
    results["decode_bandwidth_bound"] = {"seconds": weight_bytes_per_token(cfg, weights) / read_bandwidth()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.layers, args.repeats)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    bound = results["decode_bandwidth_bound"]["seconds"]
    print(f"Qwen3-0.6B shape, {args.layers} layers, float32, NumPy engine, medians of {args.repeats} runs")
    print(f"{'case':12} {'untraced':>10} {'traced':>10} {'overhead':>9}")
    for case in ("prefill32", "prefill256", "decode"):
        r = results[case]
        print(f"{case:12} {r['numpy']:9.3f}s {r['numpy_traced']:9.3f}s {r['numpy_traced'] / r['numpy']:8.2f}×")
    print(f"decode bandwidth bound {bound:.3f}s per token; decode / bound = "
          f"{results['decode']['numpy'] / bound:.2f}× untraced, {results['decode']['numpy_traced'] / bound:.2f}× traced")


if __name__ == "__main__":
    main()
