"""NumPy engine vs the torch backend on Qwen3-0.6B (full depth, seeded random weights, CPU, float32).

Cases: prefill of 32 and 256 tokens, and one decode step with the KV cache after a 32-token prompt; each
untraced and fully traced; medians of several runs. Each engine runs in its own process so its peak memory
(max RSS) is its own. Also reported: the decode bandwidth bound (bytes of weights a decode step reads /
measured read bandwidth), where an untraced forward spends its time per op kind, the bytes of 256- and
512-token traces (in memory, on disk, on disk in float16, and how much peak memory saving adds), and the
ratios the project targets. All numbers of one report come from one run of this script.

    python benchmarks/bench.py [--repeats 5] [--layers 28] [--json]

``--json`` prints every figure: ``{case: {engine: seconds}}`` for prefill32, prefill256 and decode (engines
numpy, numpy_traced, torch, torch_traced), ``decode_bandwidth_bound``, ``op_seconds_prefill32`` /
``op_seconds_decode`` (op kind -> seconds), ``trace256_bytes`` / ``trace512_bytes``, ``peak_rss_bytes``.
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

from tracer.engine.model import KVCache, forward
from tracer.engine.recorder import Recorder
from tracer.sources.presets import QWEN3_0_6B
from tracer.sources.weights import RandomWeights
from tracer.traces.schema import entry_for
from tracer.traces.tracefile import Trace, record_meta, save_trace

CASES = ("prefill32", "prefill256", "decode")
# "traced" keeps every record of the forward pass, as the torch backend's hooks do; the logit lens and direct
# logit attribution (issue 12: an LM head per layer) are on by default in `tracer trace` and timed apart.
# A decode step's logits are named by one- or two-digit steps: "decode.*.logits" would also match the lens'
# "decode.1.lens.0.logits".
FORWARD = ["tokens", "embed.*", "rope.*", "layers.*", "final_norm", "logits"] + [
    f"decode.*.{name}" for name in ("tokens", "embed.*", "rope.*", "layers.*", "final_norm")] + [
    "decode.?.logits", "decode.??.logits"]


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
    return {n: rng.integers(0, cfg.vocab_size, size=n) for n in (32, 256, 512)}


def numpy_engine(cfg, repeats: int, trace_dir: Path) -> dict[str, dict[str, float]]:
    weights = RandomWeights(cfg, seed=0)
    for name in weights:
        weights[name]
    p = prompts(cfg)
    out: dict[str, dict[str, float]] = {}
    for n in (32, 256):
        out[f"prefill{n}"] = {
            "numpy": median_time(lambda: forward(cfg, weights, p[n], Recorder(capture=[])), repeats),
            "numpy_traced": median_time(lambda: forward(cfg, weights, p[n], Recorder(capture=FORWARD)), repeats),
        }
        if n == 32:
            out["prefill32"]["numpy_traced_with_lens"] = median_time(lambda: forward(cfg, weights, p[n], Recorder()),
                                                                    repeats)

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

    out["decode"] = {"numpy": decode([]), "numpy_traced": decode(FORWARD)}
    out["op_seconds_prefill32"] = op_profile(cfg, weights, p[32], None)
    out["op_seconds_decode"] = op_profile(cfg, weights, p[32], p[32][-1:])
    out["weight_bytes"] = {"numpy": float(sum(weights[n].nbytes for n in weights))}
    for n in (256, 512):
        rec = Recorder(capture=FORWARD)
        forward(cfg, weights, p[n], rec)
        trace = Trace.in_memory(rec.records, {"records": record_meta(rec)})
        out[f"trace{n}_bytes"] = {"in_memory": float(sum(v.nbytes for v in rec.records.values()))}
        for store in (None, "float16"):
            before = peak_rss()
            path = save_trace(trace_dir / f"numpy{n}.npz", trace, store)
            out[f"trace{n}_bytes"][store or "float32"] = float(path.stat().st_size)
            out[f"trace{n}_bytes"][f"save_peak_growth_{store or 'float32'}"] = float(peak_rss() - before)
            path.unlink()
        del rec, trace
    return out


def op_profile(cfg, weights, prompt: np.ndarray, step: np.ndarray | None) -> dict[str, float]:
    """Seconds per op kind of one untraced forward (a prefill, or a decode step after ``prompt``): the time
    between consecutive records, credited to the op of the record that ends it."""
    times: dict[str, float] = {}
    last = [0.0]

    def listen(name: str) -> None:
        now = time.perf_counter()
        op = entry_for(name).op
        times[op] = times.get(op, 0.0) + now - last[0]
        last[0] = now

    cache = KVCache.empty(cfg.num_hidden_layers)
    forward(cfg, weights, prompt, Recorder(capture=[]), cache if step is not None else None)
    rec = Recorder(capture=[], listener=listen)
    last[0] = time.perf_counter()
    if step is None:
        forward(cfg, weights, prompt, rec)
    else:
        forward(cfg, weights, step, rec.scoped("decode.1."), cache)
    return dict(sorted(times.items(), key=lambda kv: -kv[1]))


def peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (ru_maxrss: KiB on Linux, bytes on macOS)."""
    if resource is None:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


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
    out["torch_trace256_bytes"] = {"float32": float(path.stat().st_size)}
    return out


def child(engine: str, layers: int, repeats: int) -> None:
    """Run one engine's cases and print them with this process's peak memory."""
    cfg = QWEN3_0_6B.replace(num_hidden_layers=layers)
    with tempfile.TemporaryDirectory() as tmp:
        fn = numpy_engine if engine == "numpy" else torch_engine
        out = fn(cfg, repeats, Path(tmp))
    out["peak_rss_bytes"] = {engine: float(peak_rss())}
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
        *(f"{n}-token trace: {r[f'trace{n}_bytes']['in_memory'] / 1e9:.2f} GB in memory; file "
          f"{r[f'trace{n}_bytes']['float32'] / 1e9:.3f} GB, {r[f'trace{n}_bytes']['float16'] / 1e9:.3f} GB with "
          f"--store-dtype float16; peak memory while saving grew by "
          f"{r[f'trace{n}_bytes']['save_peak_growth_float32'] / 1e9:.2f} GB" for n in (256, 512)),
        f"torch 256-token trace file: {r['torch_trace256_bytes']['float32'] / 1e9:.3f} GB",
        "where an untraced NumPy forward spends its time (seconds per op kind; prefill 32 / one decode step):",
        *(f"  {op:18} {r['op_seconds_prefill32'].get(op, 0):8.4f} {r['op_seconds_decode'].get(op, 0):8.4f}"
          for op in r["op_seconds_prefill32"]),
        "targets:",
        f"  numpy traced / torch untraced, prefill 32: {r['prefill32']['numpy_traced'] / r['prefill32']['torch']:.2f}× "
        f"(target ≤ 1.00)",
        f"  numpy decode / bandwidth bound: {r['decode']['numpy'] / bound:.2f}× untraced (target ≤ 1.10), "
        f"{r['decode']['numpy_traced'] / bound:.2f}× traced (target ≤ 1.15)",
        f"  512-token trace file: {r['trace512_bytes']['float16'] / 1e9:.3f} GB with --store-dtype float16 "
        f"(target ≤ 1 GB)",
        f"  numpy tracing overhead, prefill 32: {r['prefill32']['numpy_traced'] / r['prefill32']['numpy']:.2f}× "
        f"(target ≤ 1.10); with the logit lens and attribution (tracer trace's default): "
        f"{r['prefill32']['numpy_traced_with_lens'] / r['prefill32']['numpy']:.2f}×",
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
        print(json.dumps(results, indent=2))
    else:
        print(report(results, args.layers, args.repeats))


if __name__ == "__main__":
    main()
