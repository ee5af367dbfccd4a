# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb07_md1")

# %%
import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.figures.forward import compare_figure
from tracer.teaching.classroom import Exercise, language, setup
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
print(counts, "first divergence:", first_divergence(rows))
compare_figure(rows, LANG).show()
ex1 = Exercise("nb07_diff", counts["DIFF"], tolerance=0, lang=LANG, counts=counts)
ex1

# %%
answer_1 = None  # ← your answer
ex1.check(answer_1)

# %%
ex2 = Exercise("nb07_roundoff", 2.0 ** -8, tolerance=1e-4, lang=LANG, gap=f"{2.0 ** -7:g}")
ex2

# %%
answer_2 = None  # ← your answer
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
answer_3 = None  # ← your answer
ex3.check(answer_3)

# %%
drift.sort_values("max_rel", ascending=False).head(10)

# %% [markdown]
# ## Block quantization: one Q4_K block · 區塊量化:一個 Q4_K 區塊
# A GGUF file stores most weights in blocks. Q4_K cuts a row into super-blocks of 256 weights, each made of
# 8 sub-blocks of 32. Every sub-block j has a 6-bit scale `sc_j` and a 6-bit minimum `m_j`; the super-block
# has two fp16 numbers `d` and `dmin`; every weight keeps only a 4-bit code `q` (0–15):
# **x ≈ d·sc_j·q − dmin·m_j**. That is 144 bytes for 256 weights: 4.5 bits per weight instead of 32.
#
# GGUF 檔把大多數權重按區塊存放。Q4_K 把一列權重切成 256 個一組的超區塊,每個超區塊再分成 8 個 32 個權重的
# 子區塊。子區塊 j 有 6 位元的縮放 `sc_j` 與 6 位元的最小值 `m_j`;超區塊有兩個 fp16 數 `d`、`dmin`;每個權重
# 只留 4 位元的代碼 `q`(0–15):**x ≈ d·sc_j·q − dmin·m_j**。256 個權重共 144 位元組,每個權重 4.5 位元,
# 而不是 32 位元。

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
print(f"{block.size} bytes; d = {fields['d']:.3e}, dmin = {fields['dmin']:.3e}")
pd.DataFrame({"sc_j (scale)": fields["scales"], "m_j (min)": fields["mins"]}).T

# %% [markdown]
# The first 8 weights of sub-block 0: the stored code and what it stands for. The `gguf` package (llama.cpp's
# own reader) decodes the same bytes to the same numbers.
#
# 子區塊 0 的前 8 個權重:存下的代碼,以及它代表的值。`gguf` 套件(llama.cpp 自己的讀取程式)把同樣的位元組
# 解回同樣的數字。

# %%
print("gguf agrees:", np.array_equal(quants.dequantize(block, GGMLQuantizationType.Q4_K), fields["values"].ravel()))
pd.DataFrame({"x": row[:8], "q": fields["codes"][0, :8], "d·sc₀·q − dmin·m₀": fields["values"][0, :8],
              "error": fields["values"][0, :8] - row[:8]})

# %% [markdown]
# ## Q8_0 and Q4_K runs drift from the reference, layer by layer · 逐層看 Q8_0 與 Q4_K 偏離參考多少
# The same model written as GGUF files of two types, traced on the same tokens; the curve is the relative error
# of the residual stream after each layer, then of the logits.
#
# 同一個模型寫成兩種型別的 GGUF 檔,用同樣的 token 追蹤;曲線是每一層之後殘差流的相對誤差,最後是 logits 的。

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
