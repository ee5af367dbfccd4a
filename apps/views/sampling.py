"""The chosen token, the top tokens with their text, the distribution over the whole vocabulary, a token
search, and temperature / top-k / top-p on the recorded logits."""

import numpy as np
import streamlit as st

from common import decode_steps, header, lang, require_trace, show_notes, t, token_search, vocab_table
from tracer.engine import ops
from tracer.figures.forward import sampling_figure, top_tokens, vocab_distribution_figure
from tracer.text.tokentext import TokenText

header("nav_sampling")
trace = require_trace()
show_notes(trace, "sampling")
m = trace.meta
text = TokenText(m)
steps = sorted({int(n.split(".")[1]) for n in trace.names if n.startswith("sample.") and n.endswith(".token_id")})
if not steps:
    st.info(t("no_sampling"))
    st.stop()
step = st.selectbox(t("step"), steps, format_func=lambda s: t("sample_step", s=s))
n = f"sample.{step}"
logits = np.asarray(trace[f"{n}.masked_logits"], dtype=np.float64)
chosen = int(trace[f"{n}.token_id"])
st.metric(t("chosen"), f"{chosen} 「{text.labels([chosen])[0]}」")
if m["sampling"]["suppress"]:
    st.caption(t("suppressed") + ": " + ", ".join(f"{i} 「{s}」" for i, s in
                                                  zip(m["sampling"]["suppress"], text.labels(m["sampling"]["suppress"]))))
base = ops.softmax(logits)
st.subheader(t("top_tokens"))
top = [i for i, _, _ in top_tokens(base, None, 15)]
st.dataframe(vocab_table(logits, base, top, text), hide_index=True)
st.plotly_chart(vocab_distribution_figure(logits, base, lang()), key="distribution")
token_search(logits, base, text, "sampling")

st.subheader(t("try_settings"))
cols = st.columns(3)
temperature = cols[0].slider(t("temperature"), 0.0, 2.0, 1.0, 0.05, key="temperature", help=t("temperature_help"))
top_k = cols[1].slider(t("top_k"), 0, min(100, len(logits)), 0, key="top_k")
top_p = cols[2].slider(t("top_p"), 0.05, 1.0, 1.0, 0.05, key="top_p")
fig, probs = sampling_figure(logits, temperature, top_k or None, top_p if top_p < 1 else None, text.labels,
                             lang=lang())
st.plotly_chart(fig, key="sampling")
shown = [i for i, _, _ in top_tokens(probs, None, 10)]
st.dataframe([{t("col_id"): i, t("col_token"): s, t("col_prob"): round(float(probs[i]), 6)}
              for i, s in zip(shown, text.labels(shown))], hide_index=True, key="after")
decodes = decode_steps(trace)
if decodes:
    st.subheader(t("timeline"))
    rows = []
    for s in decodes:
        cache = f"decode.{s}.layers.0.attn.k_cache"
        fed = int(trace[f"decode.{s}.tokens"][0])
        picked = int(trace[f"sample.{s}.token_id"]) if f"sample.{s}.token_id" in trace else None
        rows.append({t("step"): s, t("col_input"): f"{fed} 「{text.labels([fed])[0]}」",
                     t("col_cache"): trace[cache].shape[1] if cache in trace else None,
                     t("chosen"): f"{picked} 「{text.labels([picked])[0]}」" if picked is not None else "—"})
    st.dataframe(rows, hide_index=True)
