# %% [markdown]
# # 1 · A dense Qwen3 block by hand (seed 004 §3)
#
# Four tokens `<bos> 明天 交 報告`, hidden size 4, one head of size 2. Every cell computes one matrix with the
# engine's own op (`tracer.ops`), shows it next to the matrix printed in the course document, and says whether
# they agree. Before some cells you are asked to compute one entry yourself.

# %%
import numpy as np

from tracer import ops, seed004
from tracer.classroom import AnswerBox, difference_note, setup, side_by_side
from tracer.model import rope_inv_freq
from tracer.run import encode_prompt, load_model, run_trace

setup()
model = load_model("toy-dense")
cfg, W = model.cfg, model.weights
p = "model.layers.0"
tokens = ["<bos>", "明天", "交", "報告"]
ids = np.array(encode_prompt(model, "明天交報告"))
ids

# %% [markdown]
# ## Embedding: one-hot rows times the table E (§3-4)

# %%
X0 = ops.embedding(ids, W["model.embed_tokens.weight"])
print(difference_note(X0, seed004.DENSE["embed.out"]))
side_by_side(X0, seed004.DENSE["embed.out"], tokens)

# %% [markdown]
# ## RMSNorm (§3-5-2): every row here already has RMS 1

# %%
H = ops.rms_norm(X0, W[f"{p}.input_layernorm.weight"], cfg.rms_norm_eps)
print(difference_note(H, seed004.DENSE["layers.0.attn_norm"]))
side_by_side(H, seed004.DENSE["layers.0.attn_norm"], tokens)

# %% [markdown]
# ## Q, K, V (§3-5-3), QK-Norm (§3-5-4) and RoPE (§3-5-5)
# The document's QK-Norm divides each row by its length; its rotation turns by −90° per position.

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

# %% [markdown]
# ## Scores, causal mask, softmax (§3-5-6)
# **Your turn.** Row 明天 of the masked scores is (−0.500, 0.707, −99.293, −100). Softmax turns it into
# attention weights. What weight does 明天 give itself (row 明天, column 明天)? Type it below, then run the
# next cell to see the engine's answer.

# %%
S = ops.attention_scores(Qr[None], Kr[None], cfg.head_dim ** -0.5)[0]
M = ops.causal_mask(4, 4, cfg.mask_value, np.float64)
A = ops.softmax(S + M)
box = AnswerBox("softmax of (−0.5, 0.707, −99.293, −100): the weight of column 明天?", A[1, 1],
                hint="Only the first two entries matter: e^0.707 / (e^−0.5 + e^0.707).")
box

# %%
print(difference_note(A, seed004.DENSE["layers.0.attn.probs"]))
side_by_side(A, seed004.DENSE["layers.0.attn.probs"], tokens)

# %% [markdown]
# ## Context, output projection, residual (§3-5-7)

# %%
C = A @ V
O = ops.linear(C, W[f"{p}.self_attn.o_proj.weight"])
X_att = X0 + O
print("C:", difference_note(C, seed004.DENSE["layers.0.attn.context"]))
print("X_att:", difference_note(X_att, seed004.DENSE["layers.0.resid_mid"]))
side_by_side(X_att, seed004.DENSE["layers.0.resid_mid"], tokens)

# %% [markdown]
# ## SwiGLU and the block output (§3-5-8)
# **Your turn.** G = U = 1.964 in row `<bos>`. What is F = silu(G)·U = G·σ(G)·U there?

# %%
Xf = ops.rms_norm(X_att, W[f"{p}.post_attention_layernorm.weight"], cfg.rms_norm_eps)
G = ops.linear(Xf, W[f"{p}.mlp.gate_proj.weight"])
U = ops.linear(Xf, W[f"{p}.mlp.up_proj.weight"])
F = ops.swiglu(G, U)
box_f = AnswerBox("F[<bos>, 3] = silu(1.964) · 1.964 = ?", F[0, 3], hint="σ(1.964) ≈ 0.877.")
box_f

# %%
X1 = X_att + ops.linear(F, W[f"{p}.mlp.down_proj.weight"])
print("F:", difference_note(F, seed004.DENSE["layers.0.mlp.act"]))
print("X(1):", difference_note(X1, seed004.DENSE["layers.0.resid_post"]))
side_by_side(X1, seed004.DENSE["layers.0.resid_post"], tokens)

# %% [markdown]
# ## LM head with tied embeddings (§3-6) and greedy decoding (§3-7)

# %%
logits = ops.linear(X1[-1:], W["model.embed_tokens.weight"])[0]
print(difference_note(logits, seed004.DENSE["sample.0.logits"]))
print("greedy choice:", int(np.argmax(logits)), model.tokenizer.decode([int(np.argmax(logits))]))

# %% [markdown]
# ## The same numbers from a trace
# The engine's forward pass recorded every matrix above; the figures come from the trace, as in the explorer.

# %%
from tracer.figures import attention_figure  # noqa: E402

trace = run_trace(model, ids.tolist(), prompt="明天交報告")
assert np.allclose(trace["layers.0.attn.probs"][0], A, atol=1e-6)
attention_figure(trace, 0, 0).show()
