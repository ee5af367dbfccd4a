"""Two prompts of one model side by side: aligned tokens, the residual stream's difference per layer, and the
layer where the logit lens' predictions part."""

import streamlit as st

import guard
from common import header, lang, read_trace, read_upload, require_trace
from tracer import TracerError
from tracer.commands.run import encode_prompt, run_trace
from tracer.engine.interventions import model_of
from tracer.figures.interp import can_compare_prompts, prompt_diff, prompt_diff_figure
from tracer.i18n import t

header("Compare prompts", "比較兩個提示")
a = require_trace()
uploaded = st.file_uploader(t("interp.second_trace", lang()), type=["npz"], key="prompts_upload")
typed = st.text_input(t("interp.second_path", lang()), key="prompts_path")
other = st.text_input(t("interp.second_prompt", lang()), key="prompts_other")
if uploaded is None and not typed.strip() and not other.strip():
    st.info(t("interp.prompts_help", lang()))
    st.stop()
try:
    if uploaded is not None:
        b = read_upload(uploaded)
    elif typed.strip():
        b = read_trace(typed.strip())
    else:
        model = model_of(a.meta)
        b = run_trace(model, encode_prompt(model, other), prompt=other)
except TracerError as exc:
    st.error(guard.error_text(exc))
    st.stop()
problem = can_compare_prompts(a, b)
if problem:
    st.warning(t(problem, lang()))
    st.stop()
d = prompt_diff(a, b)
if d.diverges_at is None:
    st.write(t("interp.no_divergence", lang()))
else:
    st.write(t("interp.diverges", lang(), layer=d.diverges_at, a=d.top_a[d.diverges_at], b=d.top_b[d.diverges_at]))
st.dataframe({"A": d.tokens_a[:len(d.tokens_b)], "B": d.tokens_b[:len(d.tokens_a)],
              "=": [x == y for x, y in zip(d.tokens_a, d.tokens_b)]})
st.plotly_chart(prompt_diff_figure(d, lang()), key="prompt_diff")
