"""Qwen3-VL's vision path: the image and its patch grid, which patches merge into which token, attention over
patches per block and head, each token's M-RoPE (t, h, w) ids, DeepStack injections, and seed 002's errata."""

import numpy as np
import streamlit as st

import guard
from common import header, lang, open_trace, require_trace
from tracer import TracerError
from tracer.commands.run import encode_prompt, load_model, run_trace
from tracer.i18n import t
from tracer.vision.figures import (deepstack_figure, image_info, mrope_figure, mrope_grid_figure,
                                   patch_attention_figure, patch_grid_figure, token_map_figure)
from tracer.vision.placement import PLACEHOLDER

ERRATA = ("erratum_256", "erratum_min_pixels", "erratum_linear", "erratum_mrope", "erratum_2drope",
          "erratum_deepstack", "erratum_width")
CONFIRMED = ("confirmed_patches", "confirmed_merge", "confirmed_text_ids", "confirmed_interleave", "confirmed_patch16",
             "confirmed_posembed", "confirmed_splice", "confirmed_windows")


def test_picture() -> np.ndarray:
    """A 96×128 picture of colour gradients with a bright square: something to look at in the attention maps."""
    y, x = np.mgrid[0:96, 0:128]
    img = np.stack([x * 2, y * 2, 255 - x], axis=-1).astype(np.uint8)
    img[24:56, 64:96] = 255
    return img


def trace_image(image: object, lang: str) -> bool:
    """Trace qwen3-vl-tiny on one picture with a question in ``lang`` and open the trace; False (and the reason
    on the page) when the picture cannot be traced."""
    prompt = PLACEHOLDER + t("vision.demo_prompt", lang)
    try:
        model = load_model("qwen3-vl-tiny")
        open_trace(run_trace(model, encode_prompt(model, prompt), images=[image], prompt=prompt))
    except TracerError as exc:
        st.error(t("vision.trace_failed", lang, reason=guard.error_text(exc)))
        return False
    return True


header("vision.page_title")
L = lang()
trace = require_trace()
if "vision" not in trace.meta or not trace.meta["vision"].get("grid_thw"):
    st.info(t("vision.no_vision", L))
    if st.button(t("vision.demo_button", L), key="vision_demo") and trace_image(test_picture(), L):
        st.rerun()
    upload = st.file_uploader(t("vision.image", L), type=["png", "jpg", "jpeg", "webp"], key="vision_upload")
    if upload is not None and trace_image(upload.getvalue(), L):
        st.rerun()
else:
    v = trace.meta["vision"]
    st.write(t("vision.summary", L, images=len(v["grid_thw"]), sizes=", ".join(f"{h}×{w}" for h, w in v["image_sizes"]),
               resized=", ".join(f"{h}×{w}" for h, w in v["resized"]), tokens=sum(v["tokens_per_image"]),
               patches=sum(g[0] * g[1] * g[2] for g in v["grid_thw"])))
    k = int(st.selectbox(t("vision.image", L), list(range(len(v["grid_thw"]))), key="vision_image",
                         format_func=lambda i: t("vision.image_option", L, number=i + 1)))
    if f"vision.images.{k}.resized" in trace:
        left, right = st.columns(2)
        left.plotly_chart(patch_grid_figure(trace, k, L), key="grid")
        right.plotly_chart(token_map_figure(trace, k, L), key="tokens")
        st.caption(t("vision.grid_caption", L))
        depth = int(v["config"]["depth"])
        cols = st.columns(3)
        block = int(cols[0].number_input(t("vision.block", L), 0, depth - 1, 0, key="vision_block"))
        head = int(cols[1].number_input(t("vision.head", L), 0, int(v["config"]["num_heads"]) - 1, 0,
                                        key="vision_head"))
        _, gh, gw, _ = image_info(trace, k)
        query = int(cols[2].number_input(t("vision.query_patch", L), 0, gh * gw - 1, 0, key="vision_query"))
        if f"vision.blocks.{block}.attn.probs" in trace:
            st.plotly_chart(patch_attention_figure(trace, k, block, head, query, L), key="attention")
        st.caption(t("vision.attention_caption", L))
    if "rope.position_ids" in trace:
        st.plotly_chart(mrope_figure(trace, L), key="mrope")
        st.plotly_chart(mrope_grid_figure(trace, L), key="mrope_grid")
        st.caption(t("vision.mrope_caption", L))
    if "layers.0.deepstack" in trace:
        st.plotly_chart(deepstack_figure(trace, L), key="deepstack")
        st.caption(t("vision.deepstack_caption", L))
st.subheader(t("vision.errata_title", L))
for key in ERRATA:
    st.markdown(f"- {t('vision.' + key, L)}")
with st.expander(t("vision.confirmed_title", L)):
    for key in CONFIRMED:
        st.markdown(f"- {t('vision.' + key, L)}")
