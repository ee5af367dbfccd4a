# %% [markdown]
# # 10 · One training step, traced (seed 001: loss, SFT, DPO, GRPO)
#
# The forward pass of notebook 1, then the loss, then every gradient flowing back, then one optimizer step.
# `tracer.commands.train_run.train_step` records `train.labels`, `train.token_loss`, `train.loss`, `grad.<record>` for every
# forward record and `grad.param.<weight>` for every checkpoint tensor. Some cells ask you to compute one number.
#
# **一个被追踪的训练步(种子文档 001:损失、SFT、DPO、GRPO)。** 先做第 1 本笔记本的前向传播,再算损失,然后让每个梯度
# 反向流动,最后做一步优化。`train_step` 会记录 `train.labels`、`train.token_loss`、`train.loss`,每条前向记录的
# `grad.<记录>`,以及每个权重张量的 `grad.param.<权重>`。有些单元格请你亲手算一个数。

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import encode_prompt, load_model
from tracer.commands.train_run import dpo_step, grpo_step, train_step
from tracer.engine import backward_ops as bw
from tracer.engine import ops
from tracer.engine.train import Optimizer
from tracer.figures.train import errata_rows, grad_flow_figure, token_loss_figure, token_loss_rows
from tracer.teaching.classroom import Exercise, language, setup

setup()
LANG = language()
model = load_model("toy-dense")
ids = encode_prompt(model, "明天交報告")
trace = train_step(model, ids)
pd.DataFrame(token_loss_rows(trace))

# %% [markdown]
# ## Labels: the inputs shifted left · 标签:输入左移一位
#
# The logits at position t predict token t+1, so `train.labels[t] = ids[t+1]`; the last position has nothing to
# predict and gets −100, the value transformers ignores. The loss is the mean of `train.token_loss` over the
# counted positions — a token-level mean, as `Qwen3ForCausalLM(labels=...)` computes it.
#
# 位置 t 的 logits 预测第 t+1 个 token,所以 `train.labels[t] = ids[t+1]`;最后一个位置没有可预测的 token,标为
# transformers 会忽略的 −100。损失是计入位置上 `train.token_loss` 的平均(对 token 取平均)。

# %%
print("ids   ", ids)
print("labels", trace["train.labels"].tolist())
print("loss  ", float(trace["train.loss"]), "=", trace["train.token_loss"][:3].mean())
token_loss_figure(trace).show()

# %%
p_seed, t_seed = np.array([0.05, 0.70, 0.20, 0.03, 0.02]), 1  # seed 001's example
ex1 = Exercise("nb10_ce", bw.token_cross_entropy(np.log(p_seed)[None], np.array([t_seed]))[0], lang=LANG,
               p=", ".join(f"{v:.2f}" for v in p_seed), target=t_seed, pt=f"{p_seed[t_seed]:.2f}")
ex1

# %%
answer_1 = None  # ← your answer
ex1.check(answer_1)

# %% [markdown]
# ## The first gradient: ∂L/∂logits · 第一个梯度
#
# For a counted position, ∂L/∂logits = (softmax(logits) − onehot(target)) / N with N counted positions; masked
# positions get 0. Everything else is the chain rule applied record by record, backwards (`tracer/engine/backward_ops.py`
# has one backward op per forward op, each checked against torch autograd).
#
# 对计入的位置,∂L/∂logits = (softmax(logits) − onehot(目标)) / N,N 是计入的位置数;被遮掉的位置梯度为 0。其余的
# 梯度都是把链式法则一条记录一条记录地反向套用。

# %%
probs0 = ops.softmax(trace["logits"][0].astype(np.float64))
n_counted = int((trace["train.labels"] != -100).sum())
target0 = int(trace["train.labels"][0])
print("softmax(logits[<bos>]) =", probs0.round(4), " target:", target0, " N =", n_counted)

# %%
label0 = trace.meta["token_labels"][1]  # position 0 predicts the token at position 1
ex2 = Exercise("nb10_dlogits", trace["grad.logits"][0, target0], lang=LANG, label=label0, p=f"{probs0[target0]:.3g}",
               n=n_counted)
ex2

# %%
answer_2 = None  # ← your answer
ex2.check(answer_2)

# %%
print("grad.logits[<bos>]     =", trace["grad.logits"][0].round(4))

# %% [markdown]
# ## Gradients flowing back · 反向流动的梯度
# The norm of ∂L/∂(residual stream) from the logits back to the embedding, and per layer of weights.
#
# 残差流梯度的范数:从 logits 反向到 embedding;以及每层权重梯度的范数。

# %%
grad_flow_figure(trace).show()
dp = trace["grad.layers.0.attn.probs"][0]
p = trace["layers.0.attn.probs"][0]
print("softmax backward by hand equals the recorded grad.layers.0.attn.masked_scores:",
      np.allclose(p * (dp - (dp * p).sum(-1, keepdims=True)), trace["grad.layers.0.attn.masked_scores"][0]))

# %% [markdown]
# ## One AdamW step · 一步 AdamW
# On its first step AdamW's bias corrections make m̂ = g and v̂ = g², so each weight moves by
# −lr · g / (|g| + ε) − lr · wd · w: about lr against the sign of its gradient, whatever the gradient's size.
#
# 第一步时 AdamW 的偏差校正使 m̂ = g、v̂ = g²,所以每个权重移动 −lr · g / (|g| + ε) − lr · wd · w:大约是沿梯度
# 反方向走 lr,与梯度大小无关。

# %%
lr = 0.05
stepped = train_step(model, ids, optimizer=Optimizer("adamw", lr, 0.0), steps=1,
                     update_params="model.layers.0.self_attn.o_proj.weight")
g = stepped["grad.param.model.layers.0.self_attn.o_proj.weight"]
delta = stepped["update.param.model.layers.0.self_attn.o_proj.weight"]
row, col = np.unravel_index(np.argmax(g), g.shape)
print("largest gradient entry", (int(row), int(col)), "g =", float(g[row, col]))
print("loss before / after:", stepped.meta["losses"])

# %%
ex3 = Exercise("nb10_adam", delta[row, col], lang=LANG, lr=lr, row=int(row), col=int(col), g=f"{g[row, col]:.4f}")
ex3

# %%
answer_3 = None  # ← your answer
ex3.check(answer_3)

# %% [markdown]
# ## DPO on a preference pair · 偏好对上的 DPO
# The reference is the starting weights, so at the first step the policy equals it: both implicit rewards are 0
# and the loss is −log σ(0). A few SGD steps then raise the chosen answer's log-probability relative to the
# rejected one.
#
# 参考模型就是起始权重,所以第一步时策略与它相同:两个隐式奖励都是 0,损失是 −log σ(0)。几步 SGD 之后,偏好回答的
# log 概率相对于不偏好回答上升。

# %%
pair = {"prompt": "明天", "chosen": "交報告", "rejected": "請"}
beta = 0.1
dpo = dpo_step(model, pair, beta=beta, optimizer=Optimizer("sgd", 0.1), steps=3)
print({a: (float(dpo[f"dpo.{a}.logp"]), float(dpo[f"dpo.{a}.ref_logp"])) for a in ("chosen", "rejected")})

# %%
ex4 = Exercise("nb10_dpo", float(dpo["train.loss"]), lang=LANG, beta=beta, c=f"{float(dpo['dpo.chosen.logp']):.4f}",
               c_ref=f"{float(dpo['dpo.chosen.ref_logp']):.4f}")
ex4

# %%
answer_4 = None  # ← your answer
ex4.check(answer_4)

# %%
print("loss per step", np.round(dpo.meta["losses"], 4))

# %% [markdown]
# ## GRPO advantages · GRPO 优势值
# Rewards are normalised within the group: A = (r − mean r) / (std r + 1e-4), std with n − 1.
#
# 奖励在组内标准化:A = (r − 平均) / (标准差 + 1e-4),标准差用 n − 1。

# %%
group = {"prompt": "明天", "completions": [{"text": "交報告", "reward": 1}, {"text": "請", "reward": 0},
                                          {"text": "交", "reward": 0}, {"text": "報告請", "reward": 1}]}
grpo = grpo_step(model, group)
print("advantages", grpo["grpo.advantages"].round(6), " loss", float(grpo["train.loss"]))

# %% [markdown]
# ## Seed 001 errata · 种子文档 001 勘误

# %%
pd.DataFrame(errata_rows("en"))

# %%
pd.DataFrame(errata_rows("zh-Hans"))
