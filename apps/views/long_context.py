"""Long context: frequency pairs against the original window, score vs distance, KV-cache calculator,
sliding-window mask, and the errata of the course documents. Figures come from ``tracer.figures.longctx``."""

import json

import pandas as pd
import streamlit as st

import guard
from common import current_trace, header, lang
from tracer import TracerError
from tracer.i18n import normalize, t
from tracer.sources.config import Qwen3Config
from tracer.figures.longctx import (distance_figure, errata, kv_figure, mask_figure, pair_table, wavelength_figure,
                                    window_mask)
from tracer.engine.memory import DTYPE_BYTES, human, memory
from tracer.sources.presets import PRESETS

L = normalize(lang())
header(t("longctx.page_title", "en"), t("longctx.page_title", "zh-Hans"))
st.caption(t("longctx.page_intro", L))
FAMILY = [name for name in PRESETS if name.startswith("qwen3-")]

cols = st.columns(4)
name = cols[0].selectbox(t("longctx.ctl_model", L), FAMILY, index=0)
rope_type = cols[1].selectbox(t("longctx.ctl_rope_type", L), ["yarn", "linear", "dynamic"], index=0)
factor = cols[2].number_input(t("longctx.ctl_factor", L), value=4.0, step=0.5)
original = int(cols[3].number_input(t("longctx.ctl_original", L), value=32768, step=1024))
base = PRESETS[name].config
scaling = {"rope_type": rope_type, "factor": float(factor)}
if rope_type == "yarn":
    scaling["original_max_position_embeddings"] = original
# yarn names its original window; linear and dynamic take max_position_embeddings as the original length
max_pos = max(base.max_position_embeddings, int(original * factor)) if rope_type == "yarn" else original
try:
    scaled = base.replace(rope_scaling=scaling, max_position_embeddings=max_pos)
except TracerError as exc:
    st.error(guard.error_text(exc))
    st.stop()

# The open trace's own frequencies, when it recorded them with a scaling.
trace = current_trace()
trace_cfg = None
if trace is not None and "rope.inv_freq" in trace and trace.meta["config"].get("rope_scaling"):
    trace_cfg = Qwen3Config(**trace.meta["config"])

st.header(t("longctx.sec_wavelength", L))
shown = trace_cfg or scaled
st.plotly_chart(wavelength_figure(shown, L), key="wavelength")
rows = pair_table(shown)
regions = ", ".join(f"{t('longctx.region_' + r, L)} {sum(p.region == r for p in rows)}"
                    for r in ("extrapolated", "ramp", "interpolated"))
st.caption(t("longctx.wavelength_caption", L, regions=regions))
if trace_cfg is not None:
    st.caption(t("longctx.trace_freq_caption", L, rope_type=json.dumps(trace.meta["config"]["rope_scaling"])))

st.header(t("longctx.sec_distance", L))
max_distance = int(st.number_input(t("longctx.ctl_max_distance", L), 16, 10_000_000, 4 * original, step=1024))
st.plotly_chart(distance_figure(base, scaled, max_distance, lang=L), key="distance")
st.caption(t("longctx.distance_caption", L))

st.header(t("longctx.sec_kv", L))
kv_cols = st.columns(3)
context = int(kv_cols[0].number_input(t("longctx.ctl_context", L), 1, 10_000_000, 131072, step=4096))
dtype = kv_cols[1].selectbox(t("longctx.ctl_dtype", L), list(DTYPE_BYTES), index=0)
batch = int(kv_cols[2].number_input(t("longctx.ctl_batch", L), 1, 1024, 1))
m = memory(base, context, dtype, batch)
metrics = st.columns(5)
metrics[0].metric(t("longctx.kv_weights", L), human(m.weights))
metrics[1].metric(t("longctx.kv_cache", L), human(m.kv_total))
metrics[2].metric(t("longctx.kv_activation", L), human(m.largest_activation_bytes))
metrics[3].metric(t("longctx.kv_scores", L), human(m.scores_materialised))
metrics[4].metric(t("longctx.kv_flash", L), human(m.scores_flash))
st.plotly_chart(kv_figure(base, context, dtype, batch, L), key="kv")
st.caption(t("longctx.kv_caption", L, model=name, context=context, dtype=dtype, batch=batch))

st.header(t("longctx.sec_mask", L))
sliding = [] if trace is None else [n for n in trace.names
                                    if n.endswith(".attn.mask") and trace.info[n].get("op") == "sliding_window_mask"]
if sliding:
    pick = st.selectbox(t("longctx.mask_record", L), sliding, key="sliding_mask")
    st.caption(t("longctx.mask_from_trace", L, layer=pick.split("layers.")[1].split(".")[0]))
    st.plotly_chart(mask_figure(trace[pick], pick), key="trace_mask")
else:
    st.caption(t("longctx.mask_example", L))
    mask_cols = st.columns(2)
    tokens = int(mask_cols[0].slider(t("longctx.ctl_tokens", L), 2, 24, 10))
    window = int(mask_cols[1].slider(t("longctx.ctl_window", L), 1, 24, 4))
    pair = st.columns(2)
    pair[0].plotly_chart(mask_figure(window_mask(tokens, window), t("longctx.mask_title", L, window=window)),
                         key="mask")
    pair[1].plotly_chart(mask_figure(window_mask(tokens, None), t("longctx.causal_title", L)), key="causal")

st.header(t("longctx.sec_errata", L))
st.dataframe(pd.DataFrame(errata(L)).rename(columns={"seed": t("longctx.col_seed", L), "claim": t("longctx.col_claim", L),
                                                     "verdict": t("longctx.col_verdict", L)}),
             hide_index=True, width="stretch")
