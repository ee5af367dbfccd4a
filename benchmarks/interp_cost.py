"""What the logit lens and direct logit attribution cost on a full-size forward pass.

    python benchmarks/interp_cost.py [--tokens 32] [--repeats 3]

Qwen3-0.6B (28 layers, seeded random weights, float32), one prefill of N tokens through ``run_trace``: every
record kept (the default, lens and attribution included), the same without ``lens.*`` and ``attrib.*``, and
only the lens / only the attribution on top of the layer records. Best of ``--repeats`` runs each, interleaved.
"""

from __future__ import annotations

import argparse
import time

from tracer.commands.run import load_model, run_trace

FORWARD = ["tokens", "embed.*", "rope.*", "layers.*", "final_norm", "logits", "sample.*"]
CASES = {"forward records only": FORWARD, "+ lens": FORWARD + ["lens.*"], "+ attribution": FORWARD + ["attrib.*"],
         "default (everything)": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = load_model("qwen3-0.6b")
    ids = [(i * 4099) % 151936 for i in range(args.tokens)]
    run_trace(model, ids, capture=FORWARD)  # make the random weights once
    best = {name: float("inf") for name in CASES}
    for _ in range(args.repeats):
        for name, capture in CASES.items():
            start = time.perf_counter()
            trace = run_trace(model, ids, capture=capture)
            best[name] = min(best[name], time.perf_counter() - start)
            del trace
    base = best["forward records only"]
    for name, seconds in best.items():
        print(f"{name:24} {seconds:6.2f} s  ({seconds / base:4.1f}× the forward records only)")


if __name__ == "__main__":
    main()
