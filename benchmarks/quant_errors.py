"""Weight and logits error of every GGUF type tracer quantize writes, on small dense and MoE Qwen3 shapes.

    PYTHONPATH=. python benchmarks/quant_errors.py

Shapes: 2 layers, hidden 256, head_dim 32, intermediate 512 (MoE: 8 experts of 128, top-2), vocabulary 512,
seeded N(0, 0.02²) weights (seed 7); 12 tokens. "weight" is the largest relative Frobenius error of any
quantized weight (``quant.{w}.error[2]``); "logits" is ‖B − A‖_F / ‖A‖_F of the prompt's logits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tracer.commands.run import load_model, run_trace
from tracer.sources.quantize import QUANT_TYPES, quant_errors, write_gguf

SHAPE = ["num_hidden_layers=2", "hidden_size=256", "head_dim=32", "intermediate_size=512", "vocab_size=512"]
MOE = ["num_experts=8", "num_experts_per_tok=2", "moe_intermediate_size=128"]
ORDER = ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_1", "Q5_K", "Q5_0", "Q4_1", "Q4_K", "Q4_0"]


def main() -> None:
    ids = [(i * 37) % 512 for i in range(12)]
    print("| type | bits/weight | weight rel. error (dense / MoE) | logits rel. error (dense / MoE) |")
    print("|---|---|---|---|")
    results: dict[str, list[tuple[float, float, float]]] = {q: [] for q in ORDER}
    with tempfile.TemporaryDirectory() as folder:
        for extra in ([], MOE):
            model = load_model("qwen3-0.6b", SHAPE + extra, seed=7)
            reference = run_trace(model, ids)["logits"]
            for qtype in ORDER:
                assert qtype in QUANT_TYPES
                path = Path(folder) / f"{qtype}.gguf"
                write_gguf(model.cfg, model.weights, path, qtype, tokenizer=False)
                quantized = load_model(str(path))
                logits = run_trace(quantized, ids)["logits"]
                errors = [v for v in quant_errors(quantized, model).values() if v[3] < 32] or [np.zeros(4) + 32]
                worst = max(errors, key=lambda v: v[2])
                results[qtype].append((worst[3], worst[2] if worst[3] < 32 else 0.0,
                                       float(np.linalg.norm(logits - reference) / np.linalg.norm(reference))))
    for qtype, ((bits, w_dense, l_dense), (_, w_moe, l_moe)) in results.items():
        print(f"| {qtype} | {bits:g} | {w_dense:.2e} / {w_moe:.2e} | {l_dense:.2e} / {l_moe:.2e} |")


if __name__ == "__main__":
    main()
