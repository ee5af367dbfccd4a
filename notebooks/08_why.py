# %% [markdown]
# # 8 · Why this token? Logit lens, attribution and interventions
# # 8 · 為什麼是這個 token?Logit lens、歸因與干預
#
# So far we traced *what* the model computes. Now we ask *why* it chose its token, with one question all the
# way through: **which part of the model carries the chosen token's logit, and what happens when we take it
# away?** First on the course's toy MoE (seed 004 §4), then on a random Qwen3 at full width.
#
# 到目前為止我們追蹤的是模型算了「什麼」。這一課問「為什麼」選了這個 token,並用同一個問題貫穿全課:
# **模型的哪一部分撐起了被選 token 的 logit?把它拿掉會怎樣?** 先用課程的 toy MoE(seed 004 §4),
# 再用一個隨機權重、完整寬度的 Qwen3。
#
# Tools / 工具:
# - `lens.{i}.top_ids`, `lens.{i}.top_probs`: the logit lens, each block's stream read through the final norm and
#   LM head / 每個 block 之後的殘差流直接經過最終 RMSNorm 與 LM head;
# - `attrib.*`: direct logit attribution with the final norm's scale frozen / 直接 logit 歸因(最終 RMSNorm 的縮放固定);
# - interventions `zero_heads`, `drop_experts`, `patches` (CLI: `--zero-head L.H`, `--drop-expert L.E`,
#   `--patch NAME=FILE.npy`) / 干預。

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.engine.interventions import Interventions
from tracer.figures.interp import attribution_figure, attribution_terms, lens_grid, token_text
from tracer.teaching.classroom import Exercise, language, setup

setup()
LANG = language()
toy = load_model("toy-moe")
ids = toy.tokenizer.encode("明天交報告")
clean = run_trace(toy, ids, prompt="明天交報告")
last = len(ids) - 1
target = int(clean["attrib.target_ids"][last])
print("tokens:", clean.meta["token_labels"], "→ next:", token_text(clean, target))

# %% [markdown]
# ## 1 · Direct logit attribution on the toy MoE / toy MoE 上的直接 logit 歸因
#
# The stream at the end is the embedding plus everything each block wrote. With the final norm's scale frozen
# (the toy has no final norm, so the scale is 1), the LM head is linear, so the chosen token's logit splits into
# one term per writer: the embedding, each attention head, each expert (gate weight included).
#
# 最後的殘差流 = embedding + 每個 block 寫入的東西。最終 norm 的縮放固定後(toy 沒有最終 norm,縮放為 1),
# LM head 是線性的,所以被選 token 的 logit 可以拆成每個「寫入者」的一項:embedding、每個注意力 head、
# 每個專家(含 gate 權重)。

# %%
terms = attribution_terms(clean, last)
pd.DataFrame(terms, columns=["term", "contribution"]).round(4)

# %%
chosen_text = token_text(clean, target)
ex1 = Exercise("nb08_sum", clean["logits"][last, target], tolerance=0.02, lang=LANG, token=chosen_text,
               n=len(terms), terms=", ".join(f"{name} {value:.4f}" for name, value in terms), row=last, col=target)
ex1

# %%
answer_1 = None  # ← your answer
ex1.check(answer_1)

# %%
attribution_figure(clean, last).show()

# %%
z = clean["logits"][last]  # the last block's lens is softmax(z): its top-1 is the chosen token
ex2 = Exercise("nb08_lens", clean["lens.0.top_probs"][last, 0], lang=LANG, token=chosen_text,
               logits=", ".join(f"{v:.4f}" for v in z), top=f"{z.max():.4f}")
ex2

# %%
answer_2 = None  # ← your answer
ex2.check(answer_2)

# %% [markdown]
# ## 2 · Take the top expert away / 拿掉貢獻最大的專家
#
# The largest expert term above is the expert that pushes this token hardest. `drop_experts` forbids the router
# to choose it (top-k over the others); every record after the router is recomputed.
#
# 上表中最大的專家項,就是最推動這個 token 的專家。`drop_experts` 禁止 router 選它(在其餘專家中取 top-k),
# router 之後的所有紀錄都重新計算。

# %%
experts = clean["attrib.0.experts"][:, last]
top_expert = int(np.argmax(experts))
dropped = run_trace(toy, ids, prompt="明天交報告", interventions=Interventions(drop_experts=((0, top_expert),)))
print("expert", top_expert, "dropped; experts chosen now:", dropped["layers.0.moe.topk_ids"][last].tolist(),
      "was", clean["layers.0.moe.topk_ids"][last].tolist())
print("next token now:", token_text(dropped, dropped.meta["generated_ids"][0]))

# %%
chosen_before, chosen_now = clean["layers.0.moe.topk_ids"][last], dropped["layers.0.moe.topk_ids"][last]
new_expert = int(np.setdiff1d(chosen_now, chosen_before)[0])  # the expert that took the free slot
ex3 = Exercise("nb08_drop", dropped["logits"][last, target], lang=LANG, token=chosen_text, expert=top_expert,
               term=f"{experts[top_expert]:.4f}", logit=f"{clean['logits'][last, target]:.4f}", new=new_expert,
               new_term=f"{dropped['attrib.0.experts'][new_expert, last]:.4f}")
ex3

# %%
answer_3 = None  # ← your answer
ex3.check(answer_3)

# %%
print("direct term of the dropped expert:", round(float(experts[top_expert]), 4),
      " logit change:", round(float(dropped["logits"][last, target] - clean["logits"][last, target]), 4))

# %% [markdown]
# Compare the two numbers. In this toy they match: the expert that takes the free slot writes nothing along this
# token's direction. In general they need not: the replacement expert brings its own term and renormalised gate
# weights change the others. Direct attribution says who wrote the logit; an intervention says what happens
# without them.
#
# 比較這兩個數。在這個 toy 中它們相等:補上空位的專家沿這個 token 的方向沒有寫入任何東西。一般情況下不一定相等:
# 替補的專家會帶來自己的貢獻,重新正規化的 gate 權重也會改變其他專家。直接歸因告訴我們「誰寫了這個 logit」;
# 干預告訴我們「少了它會怎樣」。

# %% [markdown]
# ## 3 · The same question at full width / 完整寬度上的同一個問題
#
# Qwen3-0.6B's shape (hidden 1024, 16 query heads sharing 8 KV heads, the real 151,936-token vocabulary), with
# seeded random weights and 4 of its 28 layers so that it runs in seconds. Random weights predict nothing
# meaningful, but every identity holds, and the tools work exactly as on the real model.
#
# Qwen3-0.6B 的形狀(hidden 1024、16 個 query head 共用 8 個 KV head、真實的 151,936 詞彙),隨機權重,
# 只取 28 層中的 4 層以便幾秒內跑完。隨機權重不會做出有意義的預測,但所有恆等式都成立,工具的用法與真實模型完全相同。

# %%
big = load_model("qwen3-0.6b", ["num_hidden_layers=4"], seed=0)
big_ids = big.tokenizer.encode("The capital of France is")
full = run_trace(big, big_ids)
pos = len(big_ids) - 1
chosen = int(full["attrib.target_ids"][pos])
lens_grid(full).show()
heads_last = full["attrib.3.heads"][:, pos]
pd.DataFrame({"head": range(len(heads_last)), "kv head": [h // 2 for h in range(len(heads_last))],
              "direct term": heads_last.round(4)}).T

# %%
ex4 = Exercise("nb08_head", int(np.argmax(heads_last)), tolerance=0, lang=LANG, value=f"{heads_last.max():.4f}")
ex4

# %%
answer_4 = None  # ← your answer
ex4.check(answer_4)

# %%
head = int(np.argmax(heads_last))
zeroed = run_trace(big, big_ids, interventions=Interventions(zero_heads=((3, head),)))
before, after = full["logits"][pos, chosen], zeroed["logits"][pos, chosen]
print(f"zeroing layer 3 head {head}: logit {before:.4f} → {after:.4f} (direct term {heads_last[head]:.4f})")
print("not exactly the direct term: layer 3's MLP reads the changed stream too, and the final norm's scale moves.")
print("lens top-1 at the last position, layer by layer:",
      [token_text(zeroed, int(zeroed[f"lens.{i}.top_ids"][pos, 0])) for i in range(4)])

# %% [markdown]
# **Try it / 動手試試.** The same from the command line (pages *Logit lens & attribution*, *What if* and
# *Compare prompts* in `tracer app` do it with clicks):
#
# ```
# tracer trace qwen3-0.6b --set num_hidden_layers=4 --prompt "The capital of France is" --out clean.npz
# tracer trace qwen3-0.6b --set num_hidden_layers=4 --prompt "The capital of France is" --zero-head 3.5 --out z.npz
# tracer compare clean.npz z.npz
# tracer show clean.npz layers.1.resid_post --npy r1.npy      # activation patching between two prompts:
# tracer trace qwen3-0.6b --set num_hidden_layers=4 --prompt "The capital of Spain is" --patch layers.1.resid_post=r1.npy --out p.npz
# ```
