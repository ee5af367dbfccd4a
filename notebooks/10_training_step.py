# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb10_md1")

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import encode_prompt, load_model
from tracer.commands.train_run import dpo_step, grpo_step, train_step
from tracer.engine import backward_ops as bw
from tracer.engine import ops
from tracer.engine.train import Optimizer
from tracer.figures.train import errata_rows, grad_flow_figure, token_loss_figure, token_loss_rows
from tracer.teaching.classroom import Exercise, full_table, label, language, setup

setup()
LANG = language()
model = load_model("toy-dense")
ids = encode_prompt(model, "明天交報告")
trace = train_step(model, ids)
pd.DataFrame(token_loss_rows(trace, LANG))

# %% jupyter={"source_hidden": true}
prose("nb10_md2")

# %%
print("ids         ", ids)
print("train.labels", trace["train.labels"].tolist())
print("train.loss  ", float(trace["train.loss"]), "=", trace["train.token_loss"][:3].mean())
token_loss_figure(trace, LANG).show()

# %%
p_seed, t_seed = np.array([0.05, 0.70, 0.20, 0.03, 0.02]), 1  # seed 001's example
ex1 = Exercise("nb10_ce", bw.token_cross_entropy(np.log(p_seed)[None], np.array([t_seed]))[0], lang=LANG,
               p=", ".join(f"{v:.2f}" for v in p_seed), target=t_seed, pt=f"{p_seed[t_seed]:.2f}")
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %% jupyter={"source_hidden": true}
prose("nb10_md3")

# %%
probs0 = ops.softmax(trace["logits"][0].astype(np.float64))
n_counted = int((trace["train.labels"] != -100).sum())
target0 = int(trace["train.labels"][0])
print("softmax(logits[<bos>]) =", probs0.round(4), "", label("nb10_lbl_target", target=target0, n=n_counted))

# %%
label0 = trace.meta["token_labels"][1]  # position 0 predicts the token at position 1
ex2 = Exercise("nb10_dlogits", trace["grad.logits"][0, target0], lang=LANG, label=label0, p=f"{probs0[target0]:.3g}",
               n=n_counted)
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %%
print("grad.logits[<bos>]     =", trace["grad.logits"][0].round(4))

# %% jupyter={"source_hidden": true}
prose("nb10_md4")

# %%
grad_flow_figure(trace, LANG).show()
dp = trace["grad.layers.0.attn.probs"][0]
p = trace["layers.0.attn.probs"][0]
print(label("nb10_lbl_backward",
            same=np.allclose(p * (dp - (dp * p).sum(-1, keepdims=True)), trace["grad.layers.0.attn.masked_scores"][0])))

# %% jupyter={"source_hidden": true}
prose("nb10_md5")

# %%
lr = 0.05
stepped = train_step(model, ids, optimizer=Optimizer("adamw", lr, 0.0), steps=1,
                     update_params="model.layers.0.self_attn.o_proj.weight")
g = stepped["grad.param.model.layers.0.self_attn.o_proj.weight"]
delta = stepped["update.param.model.layers.0.self_attn.o_proj.weight"]
row, col = np.unravel_index(np.argmax(g), g.shape)
print(label("nb10_lbl_largest", entry=(int(row), int(col)), g=float(g[row, col])))
print(label("nb10_lbl_before_after", losses=stepped.meta["losses"]))

# %%
ex3 = Exercise("nb10_adam", delta[row, col], lang=LANG, lr=lr, row=int(row), col=int(col), g=f"{g[row, col]:.4f}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %% jupyter={"source_hidden": true}
prose("nb10_md6")

# %%
pair = {"prompt": "明天", "chosen": "交報告", "rejected": "請"}
beta = 0.1
dpo = dpo_step(model, pair, beta=beta, optimizer=Optimizer("sgd", 0.1), steps=3)
for a in ("chosen", "rejected"):
    print(f"dpo.{a}.logp", float(dpo[f"dpo.{a}.logp"]), f"  dpo.{a}.ref_logp", float(dpo[f"dpo.{a}.ref_logp"]))

# %%
ex4 = Exercise("nb10_dpo", float(dpo["train.loss"]), lang=LANG, beta=beta, c=f"{float(dpo['dpo.chosen.logp']):.4f}",
               c_ref=f"{float(dpo['dpo.chosen.ref_logp']):.4f}")
ex4

# %%
answer_4 = None  # ← your answer · 你的答案
ex4.check(answer_4)

# %%
print(label("nb10_lbl_per_step", losses=np.round(dpo.meta["losses"], 4)))

# %% jupyter={"source_hidden": true}
prose("nb10_md7")

# %%
group = {"prompt": "明天", "completions": [{"text": "交報告", "reward": 1}, {"text": "請", "reward": 0},
                                          {"text": "交", "reward": 0}, {"text": "報告請", "reward": 1}]}
grpo = grpo_step(model, group)
print("grpo.advantages", grpo["grpo.advantages"].round(6), "  train.loss", float(grpo["train.loss"]))

# %% jupyter={"source_hidden": true}
prose("nb10_md8")

# %%
full_table(errata_rows(LANG))
