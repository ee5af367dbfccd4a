# %% [markdown]
# # 11 · Long context / 长上下文 / 長上下文
#
# RoPE scaling (YaRN, linear, dynamic NTK), the KV cache and the sliding window. The prose of this notebook comes
# from the language catalogs: set `LANG` below.

# %%
import json

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from tracer.classroom import AnswerBox, setup
from tracer.i18n import t
from tracer.longctx import rope_frequencies
from tracer.longctx_figures import distance_figure, errata, kv_table, mask_figure, pair_table, wavelength_figure
from tracer.memory import memory
from tracer.presets import PRESETS, QWEN3_0_6B
from tracer.run import load_model, run_trace

LANG = "en"  # or "zh-Hans", "zh-Hant"


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
pd.DataFrame([r.__dict__ for r in rows]).iloc[[0, 8, 16, 23, 24, 32, 39, 40, 48, 63]]

# %%
box_kept = AnswerBox(t("longctx.q_kept", LANG), sum(r.region == "extrapolated" for r in rows), tolerance=0,
                     hint=t("longctx.h_kept", LANG))
box_kept

# %%
_, a = rope_frequencies(yarn, 1)
box_a2 = AnswerBox(t("longctx.q_a2", LANG), a ** 2, tolerance=5e-3, hint=t("longctx.h_a2", LANG))
box_a2

# %%
say("nb_trace")
tiny = ["num_hidden_layers=2", "hidden_size=64", "head_dim=16", "intermediate_size=96", "vocab_size=300",
        "num_attention_heads=4", "num_key_value_heads=2", "rope_theta=10000", "max_position_embeddings=64",
        "rope_scaling=" + json.dumps({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8})]
trace = run_trace(load_model("qwen3-0.6b", tiny), list(range(1, 17)))
cos, sin = trace["rope.cos"], trace["rope.sin"]
print("rope.inv_freq       ", np.round(trace["rope.inv_freq"], 5))
print("rope.attention_factor", float(trace["rope.attention_factor"]))
print("cos² + sin² at t = 15:", float((cos[15] ** 2 + sin[15] ** 2)[0]))

# %%
say("nb_distance")
distance_figure(QWEN3_0_6B, yarn, 131072, lang=LANG).show()

# %%
say("nb_kv")
family = [n for n in PRESETS if n.startswith("qwen3-")]
pd.DataFrame([{"model": n, **kv_table(PRESETS[n].config, [32768])[0]} for n in family]).round(2)

# %%
box_kv = AnswerBox(t("longctx.q_kv", LANG), memory(PRESETS["qwen3-8b"].config, 32768).kv_total / 2 ** 30,
                   tolerance=0.01, hint=t("longctx.h_kv", LANG))
box_kv

# %%
say("nb_sliding")
swa = tiny[:-2] + ["use_sliding_window=true", "sliding_window=4", "max_window_layers=1"]
swa_trace = run_trace(load_model("qwen3-0.6b", swa), list(range(1, 11)), max_new_tokens=2)
mask_figure(swa_trace["layers.1.attn.mask"], "layers.1.attn.mask").show()
box_window = AnswerBox(t("longctx.q_window", LANG), swa_trace["decode.1.layers.1.attn.k_cache"].shape[1],
                       tolerance=0, hint=t("longctx.h_window", LANG))
box_window

# %%
say("nb_errata")
pd.DataFrame(errata(LANG))
