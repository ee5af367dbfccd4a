# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb03_md1")

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.engine import ops
from tracer.figures.forward import heatmap, rope_angle_figure, rope_distance_figure, rope_rotation_figure
from tracer.sources.presets import QWEN3_0_6B
from tracer.teaching.classroom import Exercise, label, language, setup

setup()
LANG = language()
inv_freq = ops.rope_inv_freq(QWEN3_0_6B.head_dim, QWEN3_0_6B.rope_theta)
pd.DataFrame({label("nb03_lbl_pair_j"): range(0, 64, 8), label("nb03_lbl_omega"): inv_freq[::8],
              label("nb03_lbl_turn"): 2 * np.pi / inv_freq[::8]})

# %% jupyter={"source_hidden": true}
prose("nb03_md2")

# %%
ex1 = Exercise("nb03_omega", inv_freq[1], tolerance=5e-4, lang=LANG, dh=QWEN3_0_6B.head_dim,
               theta=f"{QWEN3_0_6B.rope_theta:g}", w0=f"{inv_freq[0]:g}")
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
cos, sin = ops.rope_tables(np.arange(64), inv_freq, np.float64)
heatmap(np.arctan2(sin, cos)[:, :64:4], [str(t) for t in range(64)],
        [label("nb03_lbl_pair_n", j=j) for j in range(0, 64, 4)], label("nb03_lbl_angle"), decimals=1,
        colorscale="Twilight", lang=LANG).show()

# %%
ex2 = Exercise("nb03_cos", cos[5, 0], lang=LANG, w0=f"{inv_freq[0]:g}", phi=f"{5 * inv_freq[0]:g}")
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %% jupyter={"source_hidden": true}
prose("nb03_md3")

# %%
rng = np.random.default_rng(0)
q, k = rng.standard_normal((2, 1, 1, 128))
def rotated(x, pos):
    c, s = ops.rope_tables(np.array([pos]), inv_freq, np.float64)
    return ops.apply_rope(x, c, s)
assert np.isclose(np.linalg.norm(rotated(q, 1234)), np.linalg.norm(q), rtol=1e-12)  # a rotation keeps the length
print(label("nb03_lbl_norms", before=np.linalg.norm(q), after=np.linalg.norm(rotated(q, 1234))))
pairs = [(5, 2), (105, 102), (3005, 3002)]
table = pd.DataFrame([{label("nb03_lbl_q_position"): m, label("nb03_lbl_k_position"): n,
                       label("nb03_lbl_distance"): m - n, "q·k": float(np.sum(rotated(q, m) * rotated(k, n)))}
                      for m, n in pairs])
assert np.allclose(table["q·k"], table["q·k"][0], rtol=1e-9)  # the same distance, the same score
table

# %%
turned = ops.apply_rope(np.array([[[1.0] + [0.0] * 63 + [0.0] * 64]]), *ops.rope_tables(np.array([3]), inv_freq,
                                                                                       np.float64))
ex3 = Exercise("nb03_rotate", turned[0, 0, 0], lang=LANG, c=f"{np.cos(3):.3f}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %% jupyter={"source_hidden": true}
prose("nb03_md4")

# %%
model = load_model("qwen3-0.6b", ["num_hidden_layers=1", "vocab_size=1000"])
trace = run_trace(model, list(range(1, 17)))
rope_angle_figure(trace, lang=LANG).show()
rope_rotation_figure(trace, 0, 0, "q", pairs=2, lang=LANG).show()
# one fixed q,k pair rotated to every distance, with the key at positions 0, 100 and 1000: the curves coincide
rope_distance_figure(trace, 0, 0, query=15, key=0, max_distance=128, lang=LANG).show()

# %% jupyter={"source_hidden": true}
prose("nb03_md5")

# %%
x = rng.standard_normal((1, 16, 128))
c, s = ops.rope_tables(np.arange(16), inv_freq, np.float64)
half = 64
interleaved = ops.apply_rope_interleaved(x, c[:, :half], s[:, :half])
perm = np.concatenate([np.arange(0, 128, 2), np.arange(1, 128, 2)])   # evens first, then odds
via_rotate_half = ops.apply_rope(x[..., perm], c, s)
permuted = np.allclose(interleaved[..., perm], via_rotate_half, atol=1e-12)
unpermuted = np.allclose(interleaved, ops.apply_rope(x, c, s), atol=1e-6)
assert permuted and not unpermuted  # the same rotation, dimensions reordered; without the permutation: different
print(label("nb03_lbl_interleaved", permuted=permuted, unpermuted=unpermuted))
