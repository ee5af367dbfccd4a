"""Top tokens, suppressed tokens, the chosen token; temperature / top-k / top-p on the recorded logits."""

import numpy as np
import streamlit as st

from common import decode_steps, header, require_trace, t
from tracer.figures import sampling_figure, top_tokens

header("Logits & sampling", "Logits 與取樣")
trace = require_trace()
m = trace.meta
vocab = m.get("vocab")
steps = sorted({int(n.split(".")[1]) for n in trace.names if n.startswith("sample.") and n.endswith(".token_id")})
if not steps:
    st.info("This trace did not capture the sampling records.")
    st.stop()
step = st.selectbox(t("step"), steps)
n = f"sample.{step}"
logits = np.asarray(trace[f"{n}.masked_logits"])
chosen = int(trace[f"{n}.token_id"])
label = (m["generated_labels"][step] if step < len(m["generated_labels"]) else str(chosen))
st.metric("chosen token", f"{chosen} {label!r}")
if m["sampling"]["suppress"]:
    st.caption("suppressed: " + ", ".join(str(i) for i in m["sampling"]["suppress"]))
cols = st.columns(3)
temperature = cols[0].slider("Temperature", 0.0, 2.0, 1.0, 0.05, key="temperature")
top_k = cols[1].slider("Top-k (0 = off)", 0, min(100, len(logits)), 0, key="top_k")
top_p = cols[2].slider("Top-p", 0.05, 1.0, 1.0, 0.05, key="top_p")
fig, probs = sampling_figure(logits, temperature, top_k or None, top_p if top_p < 1 else None, vocab)
st.plotly_chart(fig, key="sampling")
st.dataframe([{"id": i, "token": tok, "probability": round(p, 6)}
              for i, tok, p in top_tokens(probs, vocab, 10)])
decodes = decode_steps(trace)
if decodes:
    st.subheader("decode timeline: the KV cache grows one position per step")
    rows = []
    for s in decodes:
        cache = f"decode.{s}.layers.0.attn.k_cache"
        rows.append({"step": s, "input token": int(trace[f"decode.{s}.tokens"][0]),
                     "cache length": trace[cache].shape[1] if cache in trace else None,
                     "chosen": int(trace[f"sample.{s}.token_id"]) if f"sample.{s}.token_id" in trace else None})
    st.dataframe(rows)
