# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb08_md1")

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.engine.interventions import Interventions
from tracer.figures.interp import attribution_figure, attribution_terms, lens_grid, token_text
from tracer.teaching.classroom import Exercise, label, language, setup

setup()
LANG = language()
toy = load_model("toy-moe")
ids = toy.tokenizer.encode("明天交報告")
clean = run_trace(toy, ids, prompt="明天交報告")
last = len(ids) - 1
target = int(clean["attrib.target_ids"][last])
print(label("nb08_lbl_tokens", tokens=clean.meta["token_labels"], next=token_text(clean, target)))

# %% jupyter={"source_hidden": true}
prose("nb08_md2")

# %%
terms = attribution_terms(clean, last)
pd.DataFrame(terms, columns=[label("nb08_lbl_term"), label("nb08_lbl_contribution")]).round(4)

# %%
chosen_text = token_text(clean, target)
ex1 = Exercise("nb08_sum", clean["logits"][last, target], tolerance=0.02, lang=LANG, token=chosen_text,
               n=len(terms), terms=", ".join(f"{name} {value:.4f}" for name, value in terms), row=last, col=target)
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
attribution_figure(clean, last, lang=LANG).show()

# %%
z = clean["logits"][last]  # the last block's lens is softmax(z): its top-1 is the chosen token
ex2 = Exercise("nb08_lens", clean["lens.0.top_probs"][last, 0], lang=LANG, token=chosen_text,
               logits=", ".join(f"{v:.4f}" for v in z), top=f"{z.max():.4f}")
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %% jupyter={"source_hidden": true}
prose("nb08_md3")

# %%
experts = clean["attrib.0.experts"][:, last]
top_expert = int(np.argmax(experts))
dropped = run_trace(toy, ids, prompt="明天交報告", interventions=Interventions(drop_experts=((0, top_expert),)))
print(label("nb08_lbl_dropped", expert=top_expert, now=dropped["layers.0.moe.topk_ids"][last].tolist(),
            was=clean["layers.0.moe.topk_ids"][last].tolist()))
print(label("nb08_lbl_next_now", token=token_text(dropped, dropped.meta["generated_ids"][0])))

# %%
chosen_before, chosen_now = clean["layers.0.moe.topk_ids"][last], dropped["layers.0.moe.topk_ids"][last]
new_expert = int(np.setdiff1d(chosen_now, chosen_before)[0])  # the expert that took the free slot
ex3 = Exercise("nb08_drop", dropped["logits"][last, target], lang=LANG, token=chosen_text, expert=top_expert,
               term=f"{experts[top_expert]:.4f}", logit=f"{clean['logits'][last, target]:.4f}", new=new_expert,
               new_term=f"{dropped['attrib.0.experts'][new_expert, last]:.4f}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
print(label("nb08_lbl_change", term=float(experts[top_expert]),
            change=float(dropped["logits"][last, target] - clean["logits"][last, target])))

# %% jupyter={"source_hidden": true}
prose("nb08_md4")

# %% jupyter={"source_hidden": true}
prose("nb08_md5")

# %%
big = load_model("qwen3-0.6b", ["num_hidden_layers=4"], seed=0)
big_ids = big.tokenizer.encode("The capital of France is")
full = run_trace(big, big_ids)
pos = len(big_ids) - 1
chosen = int(full["attrib.target_ids"][pos])
lens_grid(full, lang=LANG).show()
heads_last = full["attrib.3.heads"][:, pos]
pd.DataFrame({label("nb08_lbl_head"): range(len(heads_last)),
              label("nb08_lbl_kv_head"): [h // 2 for h in range(len(heads_last))],
              label("nb08_lbl_direct"): heads_last.round(4)}).T

# %%
ex4 = Exercise("nb08_head", int(np.argmax(heads_last)), tolerance=0, lang=LANG, value=f"{heads_last.max():.4f}")
ex4

# %%
answer_4 = None  # ← your answer · 你的答案
ex4.check(answer_4)

# %%
head = int(np.argmax(heads_last))
zeroed = run_trace(big, big_ids, interventions=Interventions(zero_heads=((3, head),)))
before, after = full["logits"][pos, chosen], zeroed["logits"][pos, chosen]
print(label("nb08_lbl_zeroed", head=head, before=before, after=after, term=heads_last[head]))
print(label("nb08_lbl_lens", tokens=[token_text(zeroed, int(zeroed[f"lens.{i}.top_ids"][pos, 0])) for i in range(4)]))

# %% jupyter={"source_hidden": true}
prose("nb08_md6")

# %% jupyter={"source_hidden": true}
prose("nb08_md7")
