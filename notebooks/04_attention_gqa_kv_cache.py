# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb04_md1")

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.engine import ops
from tracer.engine.model import forward
from tracer.engine.recorder import Recorder
from tracer.figures.forward import attention_figure, decode_attention_figure, gqa_figure
from tracer.teaching.classroom import Exercise, label, language, setup

setup()
LANG = language()
print(ops.causal_mask(5, 5, -np.inf))
ex1 = Exercise("nb04_masked", ops.softmax(np.array([1.0, 2.0, -np.inf]))[1], lang=LANG, e1=f"{np.e:.3f}",
               e2=f"{np.e ** 2:.3f}")
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
print(label("nb04_lbl_masked", probs=ops.softmax(np.array([1.0, 2.0, -np.inf]))))

# %%
model = load_model("qwen3-0.6b", ["num_hidden_layers=2", "vocab_size=2000", "initializer_range=0.2"])
cfg = model.cfg
prompt = [11, 22, 33, 44, 55, 66]
trace = run_trace(model, prompt, max_new_tokens=5)
gqa_figure(cfg.num_attention_heads, cfg.num_key_value_heads, LANG).show()
ex2 = Exercise("nb04_kvhead", 13 // cfg.kv_groups, tolerance=0, lang=LANG, h=cfg.num_attention_heads,
               hkv=cfg.num_key_value_heads, group=cfg.kv_groups)
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %% jupyter={"source_hidden": true}
prose("nb04_md2")

# %%
attention_figure(trace, 1, 0, lang=LANG).show()
attention_figure(trace, 1, 1, lang=LANG).show()
for name in ("layers.1.attn.q_proj", "layers.1.attn.k_proj", "layers.1.attn.scores"):
    print(name, trace[name].shape)

# %% jupyter={"source_hidden": true}
prose("nb04_md3")

# %%
pd.DataFrame([{label("nb04_lbl_step"): s, label("nb04_lbl_new_token"): int(trace[f"decode.{s}.tokens"][0]),
               label("nb04_lbl_k_cache"): trace[f"decode.{s}.layers.0.attn.k_cache"].shape,
               label("nb04_lbl_scores"): trace[f"decode.{s}.layers.0.attn.scores"].shape} for s in range(1, 5)])

# %%
ex3 = Exercise("nb04_cache", trace["decode.4.layers.0.attn.k_cache"].shape[1], tolerance=0, lang=LANG, t=len(prompt))
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
decode_attention_figure(trace, 4, 1, 0, LANG).show()

# %% jupyter={"source_hidden": true}
prose("nb04_md4")

# %%
full = forward(cfg, model.weights, np.array(prompt + trace.meta["generated_ids"][:-1]), Recorder(capture=[]))
scale = float(np.abs(full).max())
diffs = [float(np.abs(trace[f"decode.{s}.logits"][0] - full[len(prompt) + s - 1]).max()) / scale for s in range(1, 5)]
print(label("nb04_lbl_cache_diffs", scale=scale, diffs=diffs))
assert max(diffs) < 1e-5  # float32 rounding: the cache changes the order of additions, not the math
