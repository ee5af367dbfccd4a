"""One training step: loss per token (masked ones and why), gradient norms flowing back, one weight matrix
before / after the update, a DPO pair's log-probs, and seed 001's errata."""

import numpy as np
import streamlit as st

import guard
from common import current_trace, header, lang
from tracer import TracerError
from tracer.commands.run import encode_prompt, load_model
from tracer.engine.train import DEFAULT_UPDATE_PARAMS, Optimizer
from tracer.i18n import t as tr
from tracer.figures.train import (dpo_figure, dpo_rows, errata_rows, grad_flow_figure, layer_grad_figure,
                                  losses_figure, token_loss_figure, token_loss_rows, weight_update_figures)
from tracer.commands.train_run import dpo_step, train_step

header(tr("train.page_title", "en"), tr("train.page_title", "zh"))
L = lang()
st.write(tr("train.page_intro", L))


@st.cache_resource(show_spinner=False, max_entries=16)
def run_step(model_name: str, prompt: str, optimizer: str, lr: float, steps: int):
    model = load_model(model_name)
    opt = Optimizer(optimizer, lr, 0.01 if optimizer == "adamw" else 0.0) if optimizer != "none" else None
    return model, train_step(model, encode_prompt(model, prompt), optimizer=opt, steps=steps if opt else 1,
                             prompt=prompt)


@st.cache_resource(show_spinner=False, max_entries=16)
def run_dpo(model_name: str, prompt: str, chosen: str, rejected: str):
    model = load_model(model_name)
    return dpo_step(model, {"prompt": prompt, "chosen": chosen, "rejected": rejected}, beta=0.1,
                    optimizer=Optimizer("sgd", 0.1), steps=3)


opened = current_trace()
model = None
if opened is not None and opened.meta.get("objective"):
    trace = opened
else:
    cols = st.columns(5)
    name = cols[0].selectbox(tr("train.page_model", L), ["toy-dense", "toy-moe"], key="train_model")
    prompt = cols[1].text_input(tr("train.page_prompt", L), "明天交報告", key="train_prompt")
    kind = cols[2].selectbox(tr("train.page_optimizer", L), ["adamw", "sgd", "none"], key="train_optimizer")
    lr = cols[3].number_input(tr("train.page_lr", L), value=0.05, min_value=1e-6, max_value=10.0, format="%g",
                              key="train_lr")
    steps = int(cols[4].number_input(tr("train.page_steps", L), value=5, min_value=1, max_value=50, key="train_steps"))
    try:
        model, trace = run_step(name, prompt, kind, float(lr), steps)
    except TracerError as exc:
        st.error(guard.error_text(exc))
        st.stop()

if "train.token_loss" in trace:
    st.subheader(tr("train.page_loss_section", L))
    st.plotly_chart(token_loss_figure(trace, L), key="token_loss")
    st.table(token_loss_rows(trace, L))
    if "train.aux_loss" in trace:
        st.caption(tr("train.page_aux", L, aux=float(trace["train.aux_loss"]),
                      coef=trace.meta["router_aux_loss_coef"], f=np.round(trace["train.aux_f"], 3).tolist(),
                      p=np.round(trace["train.aux_p"], 3).tolist()))
    st.subheader(tr("train.page_grad_section", L))
    left, right = st.columns(2)
    left.plotly_chart(grad_flow_figure(trace, L), key="grad_flow")
    right.plotly_chart(layer_grad_figure(trace, L), key="layer_grads")

st.subheader(tr("train.page_update_section", L))
if "optimizer" in trace.meta:
    st.plotly_chart(losses_figure(trace, L), key="losses")
matrices = [n.removeprefix("grad.param.") for n in trace.names if n.startswith("grad.param.") and trace[n].ndim == 2]
updated = [n.removeprefix("update.param.") for n in trace.names if n.startswith("update.param.")]
default = updated[0] if updated else (DEFAULT_UPDATE_PARAMS if DEFAULT_UPDATE_PARAMS in matrices else matrices[0])
weight = st.selectbox(tr("train.page_weight", L), matrices, index=matrices.index(default), key="train_weight")
delta = trace[f"update.param.{weight}"] if f"update.param.{weight}" in trace else None
if delta is None:
    st.info(tr("train.page_no_update", L))
before = np.asarray(model.weights[weight]) if model is not None else None
figs = weight_update_figures(before, trace[f"grad.param.{weight}"], delta, weight, L)
for k, (col, fig) in enumerate(zip(st.columns(2) * 2, figs)):
    col.plotly_chart(fig, key=f"weight{k}")

st.subheader(tr("train.page_dpo_section", L))
if trace.meta.get("objective") == "dpo":
    dpo_trace = trace
else:
    st.caption(tr("train.page_dpo_run", L))
    cols = st.columns(3)
    p = cols[0].text_input(tr("train.page_dpo_prompt", L), "明天", key="dpo_prompt")
    c = cols[1].text_input(tr("train.chosen", L), "交報告", key="dpo_chosen")
    r = cols[2].text_input(tr("train.rejected", L), "請", key="dpo_rejected")
    try:
        dpo_trace = run_dpo(st.session_state.get("train_model", "toy-dense"), p, c, r)
    except TracerError as exc:
        st.error(guard.error_text(exc))
        dpo_trace = None
if dpo_trace is not None:
    st.table(dpo_rows(dpo_trace, L))
    st.plotly_chart(dpo_figure(dpo_trace, L), key="dpo")
    if "optimizer" in dpo_trace.meta:
        st.plotly_chart(losses_figure(dpo_trace, L), key="dpo_losses")

st.subheader(tr("train.page_errata_section", L))
st.table(errata_rows(L))
