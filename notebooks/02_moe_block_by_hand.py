# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb02_md1")

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.figures.forward import expert_load_figure, record_heatmap, topk_equivalence
from tracer.sources import seed004
from tracer.teaching.classroom import Exercise, difference_note, label, language, setup, side_by_side

setup()
LANG = language()
model = load_model("toy-moe")
ids = encode_prompt(model, "明天交報告")
tokens = ["<bos>", "明天", "交", "報告"]
full = run_trace(model, ids)
paper = run_trace(model, ids, round_decimals=3)

# %% jupyter={"source_hidden": true}
prose("nb02_md2")

# %%
L = paper["layers.0.moe.router_logits"]
print(difference_note(L, seed004.MOE["layers.0.moe.router_logits"], 2.5e-3))
L0 = full["layers.0.moe.router_logits"][0]
ex1 = Exercise("nb02_gate", full["layers.0.moe.topk_weights"][0, 0], lang=LANG,
               logits=", ".join(f"{x:.3f}" for x in L0), a=f"{L0[1]:.3f}", b=f"{L0[2]:.3f}")
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
G = paper["layers.0.moe.gates"]
print(difference_note(G, seed004.MOE["layers.0.moe.gates"], 2.5e-3))
side_by_side(G, seed004.MOE["layers.0.moe.gates"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb02_md3")

# %%
pd.DataFrame(topk_equivalence(full, 0, LANG))

# %% jupyter={"source_hidden": true}
prose("nb02_md4")

# %%
for e, rows in seed004.EXPERT_ROWS.items():
    n = f"layers.0.moe.experts.{e}"
    print(label("nb02_lbl_expert", expert=e, tokens=[tokens[r] for r in full[n + ".token_ids"]],
                note=difference_note(paper[n + ".down_proj"], seed004.EXPERTS[e]["down_proj"][rows], 2.5e-3)))
record_heatmap(full, "layers.0.moe.gates", lang=LANG).show()
expert_load_figure(full, 3, lang=LANG).show()

# %%
gates = full["layers.0.moe.gates"]
ex2 = Exercise("nb02_expert", int(np.argmax(gates[3])), tolerance=0, lang=LANG,
               gates=", ".join(f"{x:.3f}" for x in gates[3]))
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %% jupyter={"source_hidden": true}
prose("nb02_md5")

# %%
y0 = full["layers.0.moe.experts.0.down_proj"][list(full["layers.0.moe.experts.0.token_ids"]).index(1), 0]
ex3 = Exercise("nb02_weighted", full["layers.0.moe.experts.0.weighted"][1, 0], lang=LANG,
               w=f"{gates[1, 0]:.3f}", y=f"{y0:.3f}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
X1 = paper["layers.0.resid_post"]
print(difference_note(X1, seed004.MOE["layers.0.resid_post"], 2.5e-3))
side_by_side(X1, seed004.MOE["layers.0.resid_post"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb02_md6")

# %%
rows = []
for name in ["layers.0.attn.context", "layers.0.resid_mid", "layers.0.mlp_norm", "layers.0.moe.gates",
             "layers.0.moe.out", "layers.0.resid_post", "sample.0.logits"]:
    printed = seed004.MOE[name]
    rows.append({label("app.col_record"): name,
                 label("nb02_lbl_vs_round3"): float(np.abs(np.squeeze(paper[name]) - printed).max()),
                 label("nb02_lbl_vs_full"): float(np.abs(np.squeeze(full[name]) - printed).max())})
pd.DataFrame(rows)

# %%
logit = {"paper": seed004.MOE["sample.0.logits"][4], "round3": float(paper["sample.0.logits"][4]),
         "exact": float(full["sample.0.logits"][4])}
print(label("nb02_lbl_logit", **logit))
chosen = int(full["sample.0.token_id"])
print(label("nb02_lbl_both_choose", id=chosen, token=model.tokenizer.decode([chosen])))
