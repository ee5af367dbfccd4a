"""Router logits, softmax, top-k and gates per token; expert load; each chosen expert's contribution."""

import streamlit as st

import guard
from common import header, lang, matrix_table, require_trace, show_notes, t, zoomable_heatmap
from tracer.figures.forward import expert_load_figure, labels_for, record_heatmap, topk_equivalence

header("nav_moe")
trace = require_trace()
show_notes(trace, "moe")
cfg = trace.meta["config"]
sparse = sorted({int(n.split(".")[1]) for n in trace.names if n.startswith("layers.") and n.endswith("moe.gates")})
if not sparse:
    st.info(t("no_moe"))
    st.stop()
layer = st.selectbox(t("layer"), sparse)
n = f"layers.{layer}.moe"
left, right = st.columns(2)
left.plotly_chart(record_heatmap(trace, f"{n}.router_probs", title=t("router_probs_title"), lang=lang()), key="probs")
right.plotly_chart(record_heatmap(trace, f"{n}.gates", title=t("gates_title"), lang=lang()), key="gates")
st.subheader(t("topk_equivalence"))
st.dataframe(topk_equivalence(trace, layer, lang()), hide_index=True)
st.plotly_chart(expert_load_figure(trace, cfg["num_experts"], lang()), key="load")
experts = sorted({int(x.split(".")[4]) for x in trace.names if x.startswith(f"{n}.experts.")})
expert = st.selectbox(t("expert"), experts, format_func=lambda e: f"E{e}")
e = f"{n}.experts.{expert}"
tokens = labels_for(trace, f"{n}.gates")[0]
st.caption(t("expert_rows") + ": " + guard.plain(", ".join(tokens[r] for r in trace[f"{e}.token_ids"])))
weighted = trace[f"{e}.weighted"]
if weighted.shape[1] <= 16:
    matrix_table(trace[f"{e}.down_proj"], labels_for(trace, f"{e}.down_proj")[0], None)
    matrix_table(weighted, tokens, None)
else:
    zoomable_heatmap(weighted, tokens, None, t("weighted_title"), key="weighted")
