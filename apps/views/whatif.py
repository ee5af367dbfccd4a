"""What if: run the open trace's model and prompt again with a head zeroed, an expert dropped or a record patched
from another prompt, and see what changed."""

import numpy as np
import streamlit as st

import guard
from common import header, lang, open_trace, require_trace
from tracer import TracerError
from tracer.commands.run import encode_prompt, run_trace
from tracer.engine.interventions import Interventions, model_of, parse_pair
from tracer.engine.model import Sampling
from tracer.figures.interp import has_lens, lens_grid, token_text
from tracer.i18n import t
from tracer.traces.compare import compare_traces, first_divergence

header("What if", "如果……會怎樣")
clean = require_trace()
meta = clean.meta
cfg = meta["config"]
st.caption(t("interp.whatif_help", lang()))
left, right = st.columns(2)
heads = left.text_input(t("interp.zero_heads", lang()), "", placeholder="0.1, 1.3", key="whatif_heads")
experts = right.text_input(t("interp.drop_experts", lang()), "", placeholder="0.2",
                           disabled=not cfg.get("num_experts"), key="whatif_experts")
patch_name = left.selectbox(t("interp.patch_name", lang()),
                            [""] + [n for n in clean.names if n.startswith(("embed.", "layers."))],
                            key="whatif_patch_name")
patch_prompt = right.text_input(t("interp.patch_prompt", lang()), "", key="whatif_patch_prompt")

if st.button(t("interp.run_whatif", lang()), type="primary", key="whatif_run"):
    try:
        model = model_of(meta)
        ids = list(meta["token_ids"])
        s = meta["sampling"]
        sampling = Sampling(s["temperature"], s["top_k"], s["top_p"], tuple(s["suppress"]), s["seed"])
        steps = max(1, len(meta.get("generated_ids") or [1]))
        patches = []
        if patch_name:
            if not patch_prompt.strip():
                raise TracerError.of("interp.patch_needs_prompt")
            source = run_trace(model, encode_prompt(model, patch_prompt), sampling=sampling, max_new_tokens=steps,
                               capture=[patch_name])
            if patch_name not in source:
                raise TracerError.of("interp.patch_unknown", name=patch_name)
            patches.append((patch_name, np.array(source[patch_name])))
        iv = Interventions(tuple(parse_pair(v, "--zero-head") for v in heads.split(",") if v.strip()),
                           tuple(parse_pair(v, "--drop-expert") for v in experts.split(",") if v.strip()),
                           tuple(patches), tuple(f"prompt {patch_prompt!r}" for _ in patches))
        if not iv:
            raise TracerError.of("interp.nothing_to_do")
        base = run_trace(model, ids, sampling=sampling, max_new_tokens=steps, prompt=meta.get("prompt"))
        edited = run_trace(model, ids, sampling=sampling, max_new_tokens=steps, prompt=meta.get("prompt"),
                           interventions=iv)
        st.session_state.whatif = (base, edited)
    except TracerError as exc:
        st.error(guard.error_text(exc))

if "whatif" in st.session_state:
    base, edited = st.session_state.whatif
    a, b = base.meta["generated_ids"], edited.meta["generated_ids"]
    cols = st.columns(2)
    cols[0].metric(t("interp.clean_next", lang()), " ".join(repr(token_text(base, i)) for i in a) or "—")
    cols[1].metric(t("interp.edited_next", lang()), " ".join(repr(token_text(edited, i)) for i in b) or "—")
    rows = compare_traces(base, edited)
    first = first_divergence(rows)
    both = [r for r in rows if r.verdict != "MISSING"]  # a patched run may lack records (attribution)
    changed = [r for r in both if r.verdict != "OK"]
    st.write(t("interp.changed", lang(), count=len(changed), total=len(both), first=first.name if first else "—"))
    if len(both) < len(rows):
        st.caption(t("interp.only_in_one", lang(), count=len(rows) - len(both)))
    st.dataframe([r.as_dict() for r in changed[:500]])
    if has_lens(edited):
        st.plotly_chart(lens_grid(edited, "", lang()), key="whatif_lens")
    if st.button(t("interp.open_edited", lang())):
        open_trace(edited)
        st.rerun()
