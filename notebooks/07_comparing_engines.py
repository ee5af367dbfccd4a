# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb07_md1")

# %%
import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.figures.forward import compare_figure
from tracer.teaching.classroom import Exercise, label, language, setup
from tracer.traces.compare import compare_traces, first_divergence

setup()
LANG = language()
overrides = ["num_hidden_layers=2", "hidden_size=128", "head_dim=32", "intermediate_size=256", "vocab_size=1000"]

def traced(backend, dtype="float32"):
    model = load_model("qwen3-0.6b", overrides, seed=1)
    return run_trace(model, [3, 14, 15, 92, 65], max_new_tokens=3, backend=backend, torch_dtype=dtype)

numpy_f32, torch_f32, torch_bf16 = traced("numpy"), traced("torch"), traced("torch", "bfloat16")

# %% jupyter={"source_hidden": true}
prose("nb07_md2")

# %%
rows = compare_traces(numpy_f32, torch_f32)
counts = {v: sum(r.verdict == v for r in rows) for v in ("OK", "DIFF", "SHAPE", "MISSING")}
print(label("nb07_lbl_counts", counts=counts, first=first_divergence(rows)))
compare_figure(rows, LANG).show()
ex1 = Exercise("nb07_diff", counts["DIFF"], tolerance=0, lang=LANG, counts=counts)
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
ex2 = Exercise("nb07_roundoff", 2.0 ** -8, tolerance=1e-4, lang=LANG, gap=f"{2.0 ** -7:g}")
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %% jupyter={"source_hidden": true}
prose("nb07_md3")

# %%
rows = compare_traces(numpy_f32, torch_bf16)
drift = pd.DataFrame([{"record": r.name, "max_rel": r.max_rel} for r in rows
                      if r.max_rel is not None and not r.name.startswith(("decode.", "sample."))])
compare_figure(rows, LANG).show()
worst = drift.loc[drift["max_rel"].idxmax()]
ex3 = Exercise("nb07_worst", worst["record"], lang=LANG, value=worst["max_rel"], start=worst["record"].split(".")[0])
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
drift.sort_values("max_rel", ascending=False).head(10).rename(columns={"record": label("app.col_record")})

# %% jupyter={"source_hidden": true}
prose("nb07_md4")

# %%
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, quants

from tracer.sources.drift import drift_figure, layer_drift
from tracer.sources.kquants import q4_k_fields, quantize_q4_k
from tracer.sources.quantize import write_gguf

shape256 = ["num_hidden_layers=3", "hidden_size=256", "head_dim=32", "intermediate_size=512", "vocab_size=1000"]
reference = load_model("qwen3-0.6b", shape256, seed=1)
row = np.asarray(reference.weights["model.layers.0.mlp.up_proj.weight"][0, :256])
block = quantize_q4_k(row)
fields = q4_k_fields(block)
print(label("nb07_lbl_block", size=block.size, d=fields["d"], dmin=fields["dmin"]))
pd.DataFrame({label("nb07_lbl_scale"): fields["scales"], label("nb07_lbl_min"): fields["mins"]}).T

# %% jupyter={"source_hidden": true}
prose("nb07_md5")

# %%
same = np.array_equal(quants.dequantize(block, GGMLQuantizationType.Q4_K), fields["values"].ravel())
print(label("nb07_lbl_gguf", same=same))
pd.DataFrame({"x": row[:8], "q": fields["codes"][0, :8], "d·sc₀·q − dmin·m₀": fields["values"][0, :8],
              label("nb07_lbl_error"): fields["values"][0, :8] - row[:8]})

# %% jupyter={"source_hidden": true}
prose("nb07_md6")

# %%
tokens = [3, 14, 15, 92, 65]
baseline = run_trace(reference, tokens)
curves = {}
with tempfile.TemporaryDirectory() as folder:
    for kind in ("Q8_0", "Q4_K"):
        path = Path(folder) / f"{kind}.gguf"
        write_gguf(reference.cfg, reference.weights, path, kind, tokenizer=False)
        curves[kind] = layer_drift(baseline, run_trace(load_model(str(path)), tokens))
drift_figure(curves, LANG).show()
pd.DataFrame({kind: {r["stage"]: r["rel_error"] for r in rows} for kind, rows in curves.items()})
