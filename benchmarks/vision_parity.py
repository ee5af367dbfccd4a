"""Qwen3-VL at full-size shapes, 2 text layers and 2 vision blocks: NumPy engine vs transformers, record by record.

    PYTHONPATH=. python benchmarks/vision_parity.py [--size 448] [--blocks 2] [--layers 2]

Seeded random weights of the qwen3-vl-2b preset (hidden 2048 / vision 1024, vocab 151936) with non-trivial norms and
biases; one random RGB image. Prints the largest normwise relative error per record family and the two run times.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.traces.compare import compare_traces
from tracer.vision.placement import PLACEHOLDER
from tracer.vision.weights import vl_weight_shapes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    taps = list(range(min(args.blocks, args.layers)))
    model = load_model("qwen3-vl-2b", [f"num_hidden_layers={args.layers}", f"vision.depth={args.blocks}",
                                       f"vision.deepstack_visual_indexes={taps}"])
    rng = np.random.default_rng(0)
    weights = {}
    for name, shape in vl_weight_shapes(model.cfg, model.vision).items():
        if name.endswith("bias"):
            weights[name] = (0.02 * rng.standard_normal(shape, dtype=np.float32))
        elif "norm" in name and "linear" not in name:
            weights[name] = 1 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        else:
            weights[name] = 0.02 * rng.standard_normal(shape, dtype=np.float32)
    model.weights = weights
    image = rng.integers(0, 256, (args.size, args.size, 3)).astype(np.uint8)
    ids = encode_prompt(model, PLACEHOLDER + "Describe this image.")
    t0 = time.perf_counter()
    a = run_trace(model, ids, images=[image])
    t1 = time.perf_counter()
    b = run_trace(model, ids, images=[image], backend="torch")
    t2 = time.perf_counter()
    rows = compare_traces(a, b)
    worst: dict[str, float] = {}
    for r in rows:
        if r.max_rel is None:
            continue
        family = ".".join(p if not p.isdigit() else "#" for p in r.name.split("."))
        worst[family] = max(worst.get(family, 0.0), r.max_rel)
    print(f"image {args.size}×{args.size}: {a.meta['vision']['grid_thw']} patches grid, "
          f"{len(a.meta['token_ids'])} tokens; numpy {t1 - t0:.1f} s, torch {t2 - t1:.1f} s")
    verdicts = {v: sum(r.verdict == v for r in rows) for v in ("OK", "DIFF", "SHAPE", "MISSING")}
    print("verdicts:", verdicts, "(MISSING = preprocessing steps the library's processor does internally)")
    for family, rel in sorted(worst.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {family:45s} max_rel {rel:.2e}")
    print("largest max_rel over all records:", f"{max(worst.values()):.2e}")


if __name__ == "__main__":
    main()
