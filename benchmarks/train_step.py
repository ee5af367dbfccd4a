"""One traced training step against an untraced torch step of the same model (Qwen3-0.6B shape, seeded random
weights, CPU, float32).

Engines, each in its own process so its peak memory (max RSS) is its own, each timed as the median of
``--repeats`` runs after one warm-up:
- ``torch``: transformers' model, forward with ``labels=`` + ``loss.backward()``, no hooks (the untraced step);
- ``torch_traced``: the step of ``tracer train-step --backend torch`` on a model built once (hooks on every
  record, autograd gradients, plus the no-grad forward that reads transformers' own ``labels=`` loss);
- ``numpy_traced``: ``tracer train-step`` (NumPy forward with every record, hand-written backward).
All numbers of one report come from one run of this script.

    python benchmarks/train_step.py [--layers 2] [--tokens 32] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable

import numpy as np
from bench import median_time  # the same warm-up-then-median timing as the engine benchmark

ENGINES = ("torch", "torch_traced", "numpy_traced")


def worker(engine: str, layers: int, tokens: int, repeats: int) -> dict[str, float]:
    from tracer.commands.run import load_model
    from tracer.commands.train_run import train_step

    model = load_model("qwen3-0.6b", [f"num_hidden_layers={layers}"], seed=0)
    ids = [(i * 4099) % model.cfg.vocab_size for i in range(tokens)]
    if engine == "numpy_traced":
        fn: Callable[[], object] = lambda: train_step(model, ids)
    elif engine == "torch_traced":
        from tracer.backends import torch_train as tt
        from tracer.engine.train import Targets

        hf = tt.build(model.cfg, model.weights, None, "float32", "cpu")
        labels = Targets.next_token(np.array(ids), np.ones(len(ids), dtype=bool)).labels
        fn = lambda: tt.train_step_torch(model.cfg, hf, ids, labels, 0.001)
    else:
        import torch

        from tracer.backends import torch_backend as tb

        hf = tb.build_model(model.cfg, model.weights, None, "float32", "cpu", traced=False)
        x = torch.tensor([ids])

        def fn() -> None:
            hf.zero_grad(set_to_none=True)
            hf(input_ids=x, labels=x).loss.backward()

    seconds = median_time(fn, repeats)
    return {"seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.layers, args.tokens, args.repeats)))
        return
    results = {}
    for engine in ENGINES:
        out = subprocess.run([sys.executable, __file__, "--worker", engine, "--layers", str(args.layers), "--tokens",
                              str(args.tokens), "--repeats", str(args.repeats)], check=True, capture_output=True,
                             text=True).stdout
        results[engine] = json.loads(out.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(results))
        return
    print(f"Qwen3-0.6B shape, {args.layers} layers, {args.tokens} tokens, float32, CPU; median of {args.repeats}")
    base = results["torch"]["seconds"]
    for engine in ENGINES:
        r = results[engine]
        print(f"{engine:13} {r['seconds']:8.3f} s  ({r['seconds'] / base:5.2f}x torch)   peak RSS {r['peak_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
