# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb11_md1")

# %%
import json

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from tracer.commands.run import load_model, run_trace
from tracer.engine.longctx import rope_frequencies
from tracer.engine.memory import memory
from tracer.figures.longctx import distance_figure, errata, kv_table, mask_figure, pair_table, wavelength_figure
from tracer.i18n import t
from tracer.sources.presets import PRESETS, QWEN3_0_6B
from tracer.teaching.classroom import Exercise, full_table, label, language, setup

LANG = language()


def say(key: str) -> None:
    display(Markdown(t(f"longctx.{key}", LANG)))


setup()
say("nb_intro")

# %%
say("nb_pairs")
yarn = QWEN3_0_6B.replace(max_position_embeddings=131072, rope_scaling={
    "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})
rows = pair_table(yarn)
wavelength_figure(yarn, LANG).show()
pairs = pd.DataFrame([{**r.__dict__, "region": label(f"longctx.region_{r.region}")} for r in rows])
pairs.rename(columns=lambda c: label(f"nb11_lbl_{c}")).iloc[[0, 8, 16, 23, 24, 32, 39, 40, 48, 63]]

# %%
scaling, window = yarn.rope_scaling, yarn.rope_scaling.original_max_position_embeddings
beta_fast = scaling.beta_fast or 32  # YaRN's default
ex1 = Exercise("nb11_kept", sum(r.region == "extrapolated" for r in rows), tolerance=0, lang=LANG,
               factor=f"{scaling.factor:g}", window=f"{window:,}", pairs=len(rows), beta=f"{beta_fast:g}",
               limit=f"{window / beta_fast:,.0f}")
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
_, a = rope_frequencies(yarn, 1)
ex2 = Exercise("nb11_a2", a ** 2, lang=LANG, factor=f"{scaling.factor:g}", a=f"{a:.4f}")
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %%
say("nb_trace")
tiny = ["num_hidden_layers=2", "hidden_size=64", "head_dim=16", "intermediate_size=96", "vocab_size=300",
        "num_attention_heads=4", "num_key_value_heads=2", "rope_theta=10000", "max_position_embeddings=64",
        "rope_scaling=" + json.dumps({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8})]
trace = run_trace(load_model("qwen3-0.6b", tiny), list(range(1, 17)))
cos, sin = trace["rope.cos"], trace["rope.sin"]
print("rope.inv_freq       ", np.round(trace["rope.inv_freq"], 5))
print("rope.attention_factor", float(trace["rope.attention_factor"]))
print(label("nb11_lbl_norm", value=float((cos[15] ** 2 + sin[15] ** 2)[0])))

# %%
say("nb_distance")
distance_figure(QWEN3_0_6B, yarn, 131072, lang=LANG).show()

# %%
say("nb_kv")
family = [n for n in PRESETS if n.startswith("qwen3-")]
kv_rows = pd.DataFrame([{"model": n, **kv_table(PRESETS[n].config, [32768])[0]} for n in family]).round(2)
kv_rows.rename(columns=lambda c: label(f"nb11_lbl_{c}"))

# %%
q8 = PRESETS["qwen3-8b"].config
longest = 131072
kv = memory(q8, longest)
ex3 = Exercise("nb11_kv", kv.kv_total / 2 ** 30, tolerance=0.01, lang=LANG, model="Qwen3-8B",
               layers=q8.num_hidden_layers, kv=q8.num_key_value_heads, dh=q8.head_dim, tokens=f"{longest:,}",
               per_token=f"{kv.kv_per_token:,}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
say("nb_sliding")
sliding, prompt_ids = 4, list(range(1, 11))
swa = tiny[:-2] + ["use_sliding_window=true", f"sliding_window={sliding}", "max_window_layers=1"]
swa_trace = run_trace(load_model("qwen3-0.6b", swa), prompt_ids, max_new_tokens=2)
mask_figure(swa_trace["layers.1.attn.mask"], "layers.1.attn.mask").show()

# %%
ex4 = Exercise("nb11_window", swa_trace["decode.1.layers.1.attn.k_cache"].shape[1], tolerance=0, lang=LANG,
               prompt=len(prompt_ids), w=sliding, full=swa_trace["decode.1.layers.0.attn.k_cache"].shape[1])
ex4

# %%
answer_4 = None  # ← your answer · 你的答案
ex4.check(answer_4)

# %%
say("nb_errata")
full_table([{label(f"longctx.col_{k}"): text for k, text in row.items()} for row in errata(LANG)])
