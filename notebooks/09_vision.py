# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb09_md1")

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.figures.forward import heatmap
from tracer.i18n import t
from tracer.teaching.classroom import Exercise, bullets, label, language, setup
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

# %% jupyter={"source_hidden": true}
prose("nb09_md2")

# %%
rows = []
for h, w in [(28, 28), (64, 96), (224, 224), (448, 448), (768, 768), (1080, 1920)]:
    rh, rw = vops.smart_resize(h, w, vc.factor, vc.min_pixels, vc.max_pixels)
    rows.append({label("nb09_lbl_image"): f"{h}×{w}", label("nb09_lbl_resized"): f"{rh}×{rw}",
                 label("nb09_lbl_grid"): f"{rh // 16}×{rw // 16}", label("nb09_lbl_patches"): rh * rw // 256,
                 label("nb09_lbl_tokens"): rh * rw // 1024})
pd.DataFrame(rows)

# %%
rh, rw = vops.smart_resize(448, 448, vc.factor, vc.min_pixels, vc.max_pixels)
ex1 = Exercise("nb09_tokens", rh * rw // (vc.patch_size * vc.spatial_merge_size) ** 2, tolerance=0, lang=LANG,
               side=448, factor=vc.factor, patch=vc.patch_size, merge=vc.spatial_merge_size,
               group=vc.spatial_merge_size ** 2)
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %% jupyter={"source_hidden": true}
prose("nb09_md3")

# %%
tiny = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
print(tiny[0].astype(int))
print(label("nb09_lbl_order", order=vops.patchify(tiny, patch=1, temporal=1, merge=2)[:, 0].astype(int)))

# %% jupyter={"source_hidden": true}
prose("nb09_md4")

# %%
y, x = np.mgrid[0:64, 0:96]
picture = np.stack([x * 2, y * 3, 255 - x * 2], axis=-1).astype(np.uint8)
picture[16:48, 48:80] = 255
model = load_model("qwen3-vl-tiny")
prompt = PLACEHOLDER + "What is in the picture?"
trace = run_trace(model, encode_prompt(model, prompt), images=[picture], prompt=prompt)
v = trace.meta["vision"]
print(label("nb09_lbl_sizes", sizes=v["image_sizes"], resized=v["resized"], grid=v["grid_thw"]))
print(label("nb09_lbl_token_list", tokens=trace.meta["token_labels"]))
patch_grid_figure(trace, 0, LANG).show()
token_map_figure(trace, 0, LANG).show()

# %% jupyter={"source_hidden": true}
prose("nb09_md5")

# %%
patch_attention_figure(trace, 0, block=3, head=0, query=9, lang=LANG).show()
two = run_trace(model, encode_prompt(model, PLACEHOLDER + PLACEHOLDER + "Same?"), images=[picture, picture[:, ::-1]])
heatmap(two["vision.blocks.0.attn.probs"][0], title=t("notebooks.nb09_two_images", LANG),
        colorscale="Viridis", symmetric=False, lang=LANG).show()

# %% jupyter={"source_hidden": true}
prose("nb09_md6")

# %%
mrope_figure(trace, LANG).show()
mrope_grid_figure(trace, LANG).show()
pos = trace["rope.position_ids"]
first_text = int(np.flatnonzero(np.array(trace.meta["token_ids"]) == 151653)[0]) + 1
print(label("nb09_lbl_delta", delta=int(pos.max()) + 1 - pos.shape[1]))

# %%
image_rows = np.flatnonzero(np.array(trace.meta["token_ids"]) == 151655)  # the <|image_pad|> tokens
s = int(pos[0, image_rows[0]])
gh, gw = (n // vc.spatial_merge_size for n in v["grid_thw"][0][1:])  # the image's token grid
ex2 = Exercise("nb09_text_t", pos[0, first_text], tolerance=0, lang=LANG, start=int(pos[0, image_rows[0] - 1]), s=s,
               gh=gh, gw=gw, top=max(gh, gw) - 1)
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %%
ex3 = Exercise("nb09_w", pos[2, image_rows[-1]], tolerance=0, lang=LANG, gh=gh, gw=gw, row=gh - 1, col=gw - 1, s=s)
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %% jupyter={"source_hidden": true}
prose("nb09_md7")

# %%
axis = axis_of_frequency(QWEN3_VL_2B_TEXT.head_dim // 2, vc.mrope_section)
print("".join("thw"[a] for a in axis))
pd.DataFrame({label("nb09_lbl_axis"): ["t", "h", "w"],
              label("nb09_lbl_pairs"): [int((axis == a).sum()) for a in range(3)]})

# %% jupyter={"source_hidden": true}
prose("nb09_md8")

# %%
deepstack_figure(trace, LANG).show()
ids = np.array(trace.meta["token_ids"])
added = trace["layers.0.deepstack"] - trace["layers.0.resid_post"]
print(label("nb09_lbl_text_change", change=float(np.abs(added[ids != 151655]).max())))

# %%
tapped = v["config"]["deepstack_visual_indexes"]  # the traced tiny model's tapped vision blocks
fed = sorted(int(n.split(".")[1]) for n in trace if n.startswith("layers.") and n.endswith(".deepstack"))
ex4 = Exercise("nb09_deepstack", len(vc.deepstack_visual_indexes), tolerance=0, lang=LANG,
               indexes=list(vc.deepstack_visual_indexes), tiny=", ".join(map(str, tapped)),
               layers=", ".join(map(str, fed)))
ex4

# %%
answer_4 = None  # ← your answer · 你的答案
ex4.check(answer_4)

# %% jupyter={"source_hidden": true}
prose("nb09_md9")

# %%
real = run_trace(model, encode_prompt(model, prompt), images=[picture], prompt=prompt, backend="torch")
rows = compare_traces(trace, real)
verdicts = pd.Series([r.verdict for r in rows]).value_counts()
print(verdicts.to_dict())
shown = pd.DataFrame([r.as_dict() for r in rows if r.name.startswith(("vision.merger.out", "vision.blocks.3.resid_post",
                                                                      "layers.0.deepstack", "logits"))])
shown.rename(columns=lambda c: label("app.col_record" if c == "name" else f"app.col_{c}"))

# %% jupyter={"source_hidden": true}
prose("nb09_md10")

# %%
ERRATA = ("erratum_256", "erratum_min_pixels", "erratum_linear", "erratum_mrope", "erratum_2drope",
          "erratum_deepstack", "erratum_width")
CONFIRMED = ("confirmed_patches", "confirmed_merge", "confirmed_text_ids", "confirmed_interleave", "confirmed_patch16",
             "confirmed_posembed", "confirmed_splice", "confirmed_windows")
bullets([f"vision.{key}" for key in ERRATA], "vision.errata_title", LANG)

# %%
bullets([f"vision.{key}" for key in CONFIRMED], "vision.confirmed_title", LANG)
