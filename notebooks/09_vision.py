# %% [markdown]
# # 9 · How Qwen3-VL sees an image (seed 002) · Qwen3-VL 如何“看”图(种子文档 002)
#
# An image becomes patches, the vision tower turns patches into vectors, every 2×2 block of patches becomes one
# language-model token, and M-RoPE gives each token a (time, height, width) position. Every step below is a record
# of a real trace, and the last section checks the NumPy engine against transformers' Qwen3-VL.
#
# 图片先切成 patch,视觉编码器把 patch 变成向量,每 2×2 个 patch 合成一个语言模型 token,M-RoPE 再给每个 token 一个
# (时间, 高度, 宽度) 位置。下面每一步都是真实追踪中的记录,最后一节把 NumPy 引擎与 transformers 的 Qwen3-VL 对照。

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.figures.forward import heatmap
from tracer.i18n import t
from tracer.teaching.classroom import Exercise, language, setup
from tracer.traces.compare import compare_traces
from tracer.vision import ops as vops
from tracer.vision.figures import (deepstack_figure, mrope_figure, mrope_grid_figure, patch_attention_figure,
                                   patch_grid_figure, token_map_figure)
from tracer.vision.mrope import axis_of_frequency
from tracer.vision.placement import PLACEHOLDER
from tracer.vision.presets import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION

setup()
LANG = language()
vc = QWEN3_VL_2B_VISION

# %% [markdown]
# ## 1 · Resize, then cut into patches · 缩放,再切成 patch
# Each side is rounded to a multiple of 32 (patch 16 × merge 2) and the area is kept between `min_pixels` = 65536
# and `max_pixels` = 16777216 (smart_resize). A token is 2×2 patches = 32×32 pixels.
#
# 每条边取整到 32 的倍数(patch 16 × merge 2),面积保持在 65536 与 16777216 像素之间。一个 token = 2×2 个 patch = 32×32 像素。

# %%
rows = []
for h, w in [(28, 28), (64, 96), (224, 224), (448, 448), (768, 768), (1080, 1920)]:
    rh, rw = vops.smart_resize(h, w, vc.factor, vc.min_pixels, vc.max_pixels)
    rows.append({"image": f"{h}×{w}", "resized": f"{rh}×{rw}", "patch grid": f"{rh // 16}×{rw // 16}",
                 "patches": rh * rw // 256, "tokens": rh * rw // 1024})
pd.DataFrame(rows)

# %%
rh, rw = vops.smart_resize(448, 448, vc.factor, vc.min_pixels, vc.max_pixels)
ex1 = Exercise("nb09_tokens", rh * rw // (vc.patch_size * vc.spatial_merge_size) ** 2, tolerance=0, lang=LANG,
               side=448, factor=vc.factor, patch=vc.patch_size, merge=vc.spatial_merge_size,
               group=vc.spatial_merge_size ** 2)
ex1

# %%
answer_1 = None  # ← your answer
ex1.check(answer_1)

# %% [markdown]
# The patches are stored in **merge-block order**: the four patches of one 2×2 block are consecutive rows of
# `pixel_values`, so the merger only has to put 4 consecutive rows side by side. A 4×4-pixel picture with 1-pixel
# patches shows the order:
#
# patch 按**合并块顺序**存放:同一个 2×2 块的 4 个 patch 是 `pixel_values` 中相邻的 4 行,merger 只需把相邻 4 行并排。

# %%
tiny = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
print(tiny[0].astype(int))
print("row order of pixel_values:", vops.patchify(tiny, patch=1, temporal=1, merge=2)[:, 0].astype(int))

# %% [markdown]
# ## 2 · A traced image · 追踪一张图
# `qwen3-vl-tiny` has the real layout (patch 16, 2×2 merge, DeepStack, M-RoPE) at a tiny width, with random weights.

# %%
y, x = np.mgrid[0:64, 0:96]
picture = np.stack([x * 2, y * 3, 255 - x * 2], axis=-1).astype(np.uint8)
picture[16:48, 48:80] = 255
model = load_model("qwen3-vl-tiny")
prompt = PLACEHOLDER + "What is in the picture?"
trace = run_trace(model, encode_prompt(model, prompt), images=[picture], prompt=prompt)
v = trace.meta["vision"]
print(v["image_sizes"], "->", v["resized"], "grid", v["grid_thw"])
print("tokens:", trace.meta["token_labels"])
patch_grid_figure(trace, 0).show()
token_map_figure(trace, 0).show()

# %% [markdown]
# ## 3 · Attention over patches · patch 之间的注意力
# No causal mask: every patch sees every patch of its own image, and (with several images) none of the others.
# 没有因果遮罩:每个 patch 看得到同一张图的所有 patch,看不到别的图。

# %%
patch_attention_figure(trace, 0, block=3, head=0, query=9).show()
two = run_trace(model, encode_prompt(model, PLACEHOLDER + PLACEHOLDER + "Same?"), images=[picture, picture[:, ::-1]])
heatmap(two["vision.blocks.0.attn.probs"][0], title="block 0, head 0: two images, two diagonal blocks",
        colorscale="Viridis", symmetric=False).show()

# %% [markdown]
# ## 4 · M-RoPE: (t, h, w) per token · 每个 token 的 (t, h, w)
# Text tokens have t = h = w. The image's tokens start at the current position s and get (s, s+row, s+col) on the
# 2×3 token grid; the text after the image continues after the image's largest id.
#
# 文本 token 的 t = h = w。图片 token 从当前位置 s 开始,在 2×3 的 token 网格上取 (s, s+行, s+列);图片之后的文本接在图片最大位置之后。

# %%
mrope_figure(trace).show()
mrope_grid_figure(trace).show()
pos = trace["rope.position_ids"]
first_text = int(np.flatnonzero(np.array(trace.meta["token_ids"]) == 151653)[0]) + 1
print("rope delta (decoded tokens add it to their index):", int(pos.max()) + 1 - pos.shape[1])

# %%
image_rows = np.flatnonzero(np.array(trace.meta["token_ids"]) == 151655)  # the <|image_pad|> tokens
s = int(pos[0, image_rows[0]])
gh, gw = (n // vc.spatial_merge_size for n in v["grid_thw"][0][1:])  # the image's token grid
ex2 = Exercise("nb09_text_t", pos[0, first_text], tolerance=0, lang=LANG, start=int(pos[0, image_rows[0] - 1]), s=s,
               gh=gh, gw=gw, top=max(gh, gw) - 1)
ex2

# %%
answer_2 = None  # ← your answer
ex2.check(answer_2)

# %%
ex3 = Exercise("nb09_w", pos[2, image_rows[-1]], tolerance=0, lang=LANG, gh=gh, gw=gw, row=gh - 1, col=gw - 1, s=s)
ex3

# %%
answer_3 = None  # ← your answer
ex3.check(answer_3)

# %% [markdown]
# Which axis turns which frequency pair (Qwen3-VL interleaves; section [24, 20, 20] of the 64 pairs):
# 每对频率由哪个轴转动(Qwen3-VL 交错分配):

# %%
axis = axis_of_frequency(QWEN3_VL_2B_TEXT.head_dim // 2, vc.mrope_section)
print("".join("thw"[a] for a in axis))
pd.DataFrame({"axis": ["t", "h", "w"], "pairs": [int((axis == a).sum()) for a in range(3)]})

# %% [markdown]
# ## 5 · DeepStack · DeepStack
# Outputs of earlier vision blocks go through their own mergers and are **added** to the hidden states after the
# first decoder layers, at the image rows only — not to every layer.
# 较早视觉 block 的输出经过各自的 merger,**加**到前几层解码器之后的隐藏状态上,只在图片行,而不是每一层。

# %%
deepstack_figure(trace).show()
ids = np.array(trace.meta["token_ids"])
added = trace["layers.0.deepstack"] - trace["layers.0.resid_post"]
print("change at text rows:", float(np.abs(added[ids != 151655]).max()))

# %%
tapped = v["config"]["deepstack_visual_indexes"]  # the traced tiny model's tapped vision blocks
fed = sorted(int(n.split(".")[1]) for n in trace if n.startswith("layers.") and n.endswith(".deepstack"))
ex4 = Exercise("nb09_deepstack", len(vc.deepstack_visual_indexes), tolerance=0, lang=LANG,
               indexes=list(vc.deepstack_visual_indexes), tiny=", ".join(map(str, tapped)),
               layers=", ".join(map(str, fed)))
ex4

# %%
answer_4 = None  # ← your answer
ex4.check(answer_4)

# %% [markdown]
# ## 6 · The engine against transformers · 引擎对照 transformers
# The same weights through transformers' `Qwen3VLForConditionalGeneration`, hooked into the same record names.

# %%
real = run_trace(model, encode_prompt(model, prompt), images=[picture], prompt=prompt, backend="torch")
rows = compare_traces(trace, real)
verdicts = pd.Series([r.verdict for r in rows]).value_counts()
print(verdicts.to_dict())
pd.DataFrame([r.as_dict() for r in rows if r.name.startswith(("vision.merger.out", "vision.blocks.3.resid_post",
                                                              "layers.0.deepstack", "logits"))])

# %% [markdown]
# `MISSING` rows are the preprocessing steps transformers' image processor does inside one call (resize,
# normalise, patchify): only the engine records them. Its `pixel_values` are compared, and equal.
#
# ## 7 · Seed 002, checked · 检查种子文档 002

# %%
for key in ("erratum_256", "erratum_min_pixels", "erratum_linear", "erratum_mrope", "erratum_2drope",
            "erratum_deepstack", "erratum_width"):
    print("•", t(f"vision.{key}", "en"))
    print("  ", t(f"vision.{key}", "zh"))
print("\n" + t("vision.confirmed_title", "en"), "·", t("vision.confirmed_title", "zh"))
for key in ("confirmed_patches", "confirmed_merge", "confirmed_text_ids", "confirmed_interleave", "confirmed_patch16",
            "confirmed_posembed", "confirmed_splice", "confirmed_windows"):
    print("✓", t(f"vision.{key}", "en"))
