# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb01_md1")

# %%
import numpy as np

from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.engine import ops
from tracer.engine.model import rope_inv_freq
from tracer.sources import seed004
from tracer.teaching.classroom import Exercise, difference_note, label, language, setup, side_by_side

setup()
LANG = language()
model = load_model("toy-dense")
cfg, W = model.cfg, model.weights
p = "model.layers.0"
tokens = ["<bos>", "明天", "交", "報告"]
ids = np.array(encode_prompt(model, "明天交報告"))
ids

# %% jupyter={"source_hidden": true}
prose("nb01_md2")

# %%
X0 = ops.embedding(ids, W["model.embed_tokens.weight"])
print(difference_note(X0, seed004.DENSE["embed.out"]))
side_by_side(X0, seed004.DENSE["embed.out"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb01_md3")

# %%
H = ops.rms_norm(X0, W[f"{p}.input_layernorm.weight"], cfg.rms_norm_eps)
print(difference_note(H, seed004.DENSE["layers.0.attn_norm"]))
side_by_side(H, seed004.DENSE["layers.0.attn_norm"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb01_md4")

# %%
Q = ops.linear(H, W[f"{p}.self_attn.q_proj.weight"])
K = ops.linear(H, W[f"{p}.self_attn.k_proj.weight"])
V = ops.linear(H, W[f"{p}.self_attn.v_proj.weight"])
Qn = ops.l2_norm(Q, W[f"{p}.self_attn.q_norm.weight"], cfg.rms_norm_eps)
Kn = ops.l2_norm(K, W[f"{p}.self_attn.k_norm.weight"], cfg.rms_norm_eps)
cos, sin = ops.rope_tables(np.arange(4), rope_inv_freq(cfg), np.float64)
Qr = ops.apply_rope(Qn[None], cos, sin)[0]
Kr = ops.apply_rope(Kn[None], cos, sin)[0]
for name, ours in (("q_norm", Qn), ("k_norm", Kn), ("q_rope", Qr), ("k_rope", Kr)):
    print(f"{name}: {difference_note(ours, seed004.DENSE[f'layers.0.attn.{name}'])}")
side_by_side(Qr, seed004.DENSE["layers.0.attn.q_rope"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb01_md5")

# %%
S = ops.attention_scores(Qr[None], Kr[None], cfg.head_dim ** -0.5)[0]
M = ops.causal_mask(4, 4, cfg.mask_value, np.float64)
A = ops.softmax(S + M)
f3 = lambda v: ", ".join(f"{x:.3f}" for x in v)  # noqa: E731
ex1 = Exercise("nb01_score", S[1, 1], lang=LANG, q=f3(Qr[1]), k=f3(Kr[1]), q0=f"{Qr[1, 0]:.3f}", k0=f"{Kr[1, 0]:.3f}",
               q1=f"{Qr[1, 1]:.3f}", k1=f"{Kr[1, 1]:.3f}", dot=f"{Qr[1] @ Kr[1]:.3f}")
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
ex2 = Exercise("nb01_softmax", A[1, 1], lang=LANG, row=f3((S + M)[1]), a=f"{(S + M)[1, 0]:.3f}",
               b=f"{(S + M)[1, 1]:.3f}")
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %%
print(difference_note(A, seed004.DENSE["layers.0.attn.probs"]))
side_by_side(A, seed004.DENSE["layers.0.attn.probs"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb01_md6")

# %%
C = A @ V
O = ops.linear(C, W[f"{p}.self_attn.o_proj.weight"])
X_att = X0 + O
print("C:", difference_note(C, seed004.DENSE["layers.0.attn.context"]))
print("X_att:", difference_note(X_att, seed004.DENSE["layers.0.resid_mid"]))
side_by_side(X_att, seed004.DENSE["layers.0.resid_mid"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb01_md7")

# %%
Xf = ops.rms_norm(X_att, W[f"{p}.post_attention_layernorm.weight"], cfg.rms_norm_eps)
G = ops.linear(Xf, W[f"{p}.mlp.gate_proj.weight"])
U = ops.linear(Xf, W[f"{p}.mlp.up_proj.weight"])
F = ops.swiglu(G, U)
ex3 = Exercise("nb01_swiglu", F[0, 3], lang=LANG, g=f"{G[0, 3]:.3f}", sigma=f"{1 / (1 + np.exp(-G[0, 3])):.3f}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
X1 = X_att + ops.linear(F, W[f"{p}.mlp.down_proj.weight"])
print("F:", difference_note(F, seed004.DENSE["layers.0.mlp.act"]))
print("X(1):", difference_note(X1, seed004.DENSE["layers.0.resid_post"]))
side_by_side(X1, seed004.DENSE["layers.0.resid_post"], tokens)

# %% jupyter={"source_hidden": true}
prose("nb01_md8")

# %%
logits = ops.linear(X1[-1:], W["model.embed_tokens.weight"])[0]
print(difference_note(logits, seed004.DENSE["sample.0.logits"]))
print(label("nb01_lbl_greedy", id=int(np.argmax(logits)), token=model.tokenizer.decode([int(np.argmax(logits))])))

# %% jupyter={"source_hidden": true}
prose("nb01_md9")

# %%
from tracer.figures.forward import attention_figure  # noqa: E402

trace = run_trace(model, ids.tolist(), prompt="明天交報告")
assert np.allclose(trace["layers.0.attn.probs"][0], A, atol=1e-6)
attention_figure(trace, 0, 0, lang=LANG).show()
