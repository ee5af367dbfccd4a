"""NumPy engine vs the torch backend on Qwen3-0.6B (full depth, seeded random weights, CPU, float32).

Cases: prefill of 32 and 256 tokens, and one decode step with the KV cache after a 32-token prompt; each
untraced and fully traced; medians of several runs. Each engine runs in its own process so its peak memory
(max RSS) is its own. Also printed: the decode bandwidth bound (bytes of weights a decode step reads /
measured read bandwidth), the size of a 256-token trace file, and the ratios the project targets. All
numbers of one report come from one run of this script.

    python benchmarks/bench.py [--repeats 5] [--layers 28] [--json]

``--json`` prints ``{case: {engine: seconds}}`` for the cases prefill32, prefill256 and decode and the
engines numpy, numpy_traced, torch, torch_traced, plus ``decode_bandwidth_bound`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tracer.model import KVCache, forward
from tracer.presets import QWEN3_0_6B
from tracer.recorder import Recorder
from tracer.tracefile import Trace, record_meta, save_trace
from tracer.weights import RandomWeights

CASES = ("prefill32", "prefill256", "decode")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: BLAS threads, caches, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second the machine streams from memory: the faster of a reduction and a matrix-vector product."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    m = a.reshape(-1, 4096)
    v = np.ones(4096, dtype=np.float32)
    return nbytes / min(median_time(lambda: a.sum(), repeats), median_time(lambda: m @ v, repeats))


def prompts(cfg) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {n: rng.integers(0, cfg.vocab_size, size=n) for n in (32, 256)}


def numpy_engine(cfg, repeats: int, trace_dir: Path) -> dict[str, dict[str, float]]:
    weights = RandomWeights(cfg, seed=0)
    for name in weights:
        weights[name]
    p = prompts(cfg)
    out: dict[str, dict[str, float]] = {}
    for n in (32, 256):
        out[f"prefill{n}"] = {
            "numpy": median_time(lambda: forward(cfg, weights, p[n], Recorder(capture=[])), repeats),
            "numpy_traced": median_time(lambda: forward(cfg, weights, p[n], Recorder()), repeats),
        }

    def decode(capture: list[str] | None) -> float:
        cache = KVCache.empty(cfg.num_hidden_layers)
        rec = Recorder(capture=capture)
        forward(cfg, weights, p[32], rec, cache)
        token, times = p[32][-1:], []
        for step in range(1, repeats + 2):
            start = time.perf_counter()
            logits = forward(cfg, weights, token, rec.scoped(f"decode.{step}."), cache)
            times.append(time.perf_counter() - start)
            token = np.array([int(np.argmax(logits[-1]))])
        return statistics.median(times[1:])

    out["decode"] = {"numpy": decode([]), "numpy_traced": decode(None)}
    rec = Recorder()
    forward(cfg, weights, p[256], rec)
    path = save_trace(trace_dir / "numpy256.npz", Trace.in_memory(rec.records, {"records": record_meta(rec)}))
    out["trace256_bytes"] = {"numpy": float(path.stat().st_size)}
    out["weight_bytes"] = {"numpy": float(sum(weights[n].nbytes for n in weights))}
    return out


def torch_engine(cfg, repeats: int, trace_dir: Path) -> dict[str, dict[str, float]]:
    import torch
    import transformers

    from tracer.backends.torch_backend import build_model, tracing

    weights = RandomWeights(cfg, seed=0)
    plain = build_model(cfg, weights, None, "float32", "cpu", traced=False)
    traced = build_model(cfg, weights, None, "float32", "cpu", traced=True)
    p = {n: torch.tensor([ids.tolist()]) for n, ids in prompts(cfg).items()}
    out: dict[str, dict[str, float]] = {}

    def run(model, ids, rec: Recorder | None, cache=None):
        """Logits [T, V] of one forward pass, traced into ``rec`` or untraced."""
        if rec is None:
            return model(input_ids=ids, past_key_values=cache, use_cache=cache is not None).logits[0]
        with tracing(cfg, model, rec, torch) as session:
            return torch.as_tensor(session.forward(ids[0].tolist(), rec, cache, "cpu"))

    with torch.no_grad():
        for n in (32, 256):
            out[f"prefill{n}"] = {
                "torch": median_time(lambda: run(plain, p[n], None), repeats),
                "torch_traced": median_time(lambda: run(traced, p[n], Recorder()), repeats),
            }

        def decode(model, traced_run: bool) -> float:
            cache = transformers.DynamicCache(config=model.config)
            rec = Recorder() if traced_run else None
            logits = run(model, p[32], rec, cache)
            times = []
            for step in range(1, repeats + 2):
                token = logits[-1:].argmax(-1)[None]
                start = time.perf_counter()
                step_rec = rec.scoped(f"decode.{step}.") if rec is not None else None
                logits = run(model, token, step_rec, cache)
                times.append(time.perf_counter() - start)
            return statistics.median(times[1:])

        out["decode"] = {"torch": decode(plain, False), "torch_traced": decode(traced, True)}
        rec = Recorder()
        run(traced, p[256], rec)
    path = save_trace(trace_dir / "torch256.npz", Trace.in_memory(rec.records, {"records": record_meta(rec)}))
    out["trace256_bytes"] = {"torch": float(path.stat().st_size)}
    return out


def child(engine: str, layers: int, repeats: int) -> None:
    """Run one engine's cases and print them with this process's peak memory."""
    cfg = QWEN3_0_6B.replace(num_hidden_layers=layers)
    with tempfile.TemporaryDirectory() as tmp:
        fn = numpy_engine if engine == "numpy" else torch_engine
        out = fn(cfg, repeats, Path(tmp))
    # ru_maxrss is KiB on Linux, bytes on macOS; the resource module does not exist on Windows
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if resource is not None else 0
    out["peak_rss_bytes"] = {engine: float(peak if sys.platform == "darwin" else peak * 1024)}
    print(json.dumps(out))


def merge(parts: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for part in parts:
        for case, engines in part.items():
            merged.setdefault(case, {}).update(engines)
    return merged


def report(r: dict[str, dict[str, float]], layers: int, repeats: int) -> str:
    bound = r["decode_bandwidth_bound"]["seconds"]
    lines = [f"Qwen3-0.6B shape, {layers} layers, float32, CPU, medians of {repeats} runs (one run of this script)",
             f"{'case':11} {'numpy':>9} {'numpy_traced':>13} {'torch':>9} {'torch_traced':>13}"]
    for case in CASES:
        e = r[case]
        lines.append(f"{case:11} {e['numpy']:8.3f}s {e['numpy_traced']:12.3f}s {e['torch']:8.3f}s "
                     f"{e['torch_traced']:12.3f}s")
    gib = 1024 ** 3
    lines += [
        f"decode bandwidth bound: {bound:.3f}s per token ({r['weight_bytes']['numpy'] / 1e9:.2f} GB of weights at "
        f"{r['bandwidth']['bytes_per_second'] / 1e9:.1f} GB/s)",
        f"peak memory: numpy {r['peak_rss_bytes']['numpy'] / gib:.2f} GiB, torch {r['peak_rss_bytes']['torch'] / gib:.2f} GiB",
        f"256-token trace file: numpy {r['trace256_bytes']['numpy'] / 1e6:.0f} MB, torch {r['trace256_bytes']['torch'] / 1e6:.0f} MB",
        "targets:",
        f"  numpy traced / torch untraced, prefill 32: {r['prefill32']['numpy_traced'] / r['prefill32']['torch']:.2f}× "
        f"(target ≤ 1.00)",
        f"  numpy decode / bandwidth bound: {r['decode']['numpy'] / bound:.2f}× (target ≤ 1.15)",
        f"  numpy tracing overhead, prefill 32: {r['prefill32']['numpy_traced'] / r['prefill32']['numpy']:.2f}× "
        f"(target ≤ 1.10)",
        f"  numpy tracing overhead, prefill 256: {r['prefill256']['numpy_traced'] / r['prefill256']['numpy']:.2f}× "
        f"(target ≤ 1.25)",
        f"  torch tracing overhead, prefill 32 / 256: {r['prefill32']['torch_traced'] / r['prefill32']['torch']:.2f}× / "
        f"{r['prefill256']['torch_traced'] / r['prefill256']['torch']:.2f}×",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--engine", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        child(args.engine, args.layers, args.repeats)
        return
    parts = []
    for engine in ("numpy", "torch"):
        proc = subprocess.run([sys.executable, __file__, "--engine", engine, "--layers", str(args.layers),
                               "--repeats", str(args.repeats)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            sys.exit(f"the {engine} run failed:\n{proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
        parts.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = merge(parts)
    bandwidth = read_bandwidth()
    results["bandwidth"] = {"bytes_per_second": bandwidth}
    results["decode_bandwidth_bound"] = {"seconds": results["weight_bytes"]["numpy"] / bandwidth}
    if args.json:
        print(json.dumps({k: results[k] for k in (*CASES, "decode_bandwidth_bound")}, indent=2))
    else:
        print(report(results, args.layers, args.repeats))


if __name__ == "__main__":
    main()
