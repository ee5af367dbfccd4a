"""Figures and tables of a training-step trace, shared by the explorer's Training page and notebook 10.

They read records (``train.*``, ``grad.*``, ``update.param.*``, ``dpo.*``); nothing is recomputed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracer.figures.forward import _go, heatmap
from tracer.i18n import t
from tracer.traces.tracefile import Trace

ERRATA = ("mse", "targets_mask", "ignore_zero", "sum_not_mean", "init_w3", "dpo_missing")
"""Seed 001's mistakes in its training formulas (the facts note, §6), one catalog entry each."""
REASON_COLORS = {"counted": "#1f77b4", "not_assistant": "#bbbbbb", "last": "#7f7f7f"}


def token_loss_rows(trace: Trace, lang: str = "en") -> list[dict[str, Any]]:
    """One row per position: its token, the target it must predict, the loss, and why a masked one is masked."""
    labels = trace.meta["token_labels"]
    ids = trace["train.labels"]
    loss = trace["train.token_loss"]
    reasons = trace.meta["label_reasons"]
    rows = []
    for pos, (label, target, value, reason) in enumerate(zip(labels, ids, loss, reasons)):
        rows.append({
            t("train.col_position", lang): pos,
            t("train.col_token", lang): label,
            t("train.col_target", lang): labels[pos + 1] if target != -100 else "−100",
            t("train.col_loss", lang): round(float(value), 4),
            t("train.col_why", lang): t(f"train.reason_{reason}", lang),
        })
    return rows


def token_loss_figure(trace: Trace, lang: str = "en") -> Any:
    """Per-position cross-entropy as bars, coloured by whether the position counts (grey: masked, with why)."""
    go = _go()
    labels = [f"{k}:{x}" for k, x in enumerate(trace.meta["token_labels"])]
    reasons = trace.meta["label_reasons"]
    loss = np.asarray(trace["train.token_loss"], dtype=np.float64)
    fig = go.Figure()
    for reason, color in REASON_COLORS.items():
        idx = [k for k, r in enumerate(reasons) if r == reason]
        if idx:
            fig.add_bar(x=[labels[k] for k in idx], y=loss[idx], name=t(f"train.reason_{reason}", lang),
                        marker_color=color)
    mean = float(trace["train.loss"])
    fig.add_hline(y=mean, line_dash="dot", annotation_text=t("train.fig_mean", lang, loss=mean))
    fig.update_layout(title=t("train.fig_token_loss", lang), xaxis_title=t("train.col_token", lang),
                      yaxis_title="−log p(target)", barmode="group", height=380)
    return fig


def _norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(x, dtype=np.float64)))


def grad_norm_rows(trace: Trace) -> list[tuple[str, float]]:
    """‖∂L/∂x‖ of the residual stream at every point the backward pass crosses, from the logits back to the
    embedding (the order gradients flow)."""
    layers = int(trace.meta["config"]["num_hidden_layers"])
    points = ["final_norm"] if "grad.final_norm" in trace else []
    for i in reversed(range(layers)):
        points += [f"layers.{i}.resid_post", f"layers.{i}.resid_mid"]
    points.append("embed.out")
    return [(p, _norm(trace[f"grad.{p}"])) for p in points if f"grad.{p}" in trace]


def param_grad_norms(trace: Trace) -> dict[str, float]:
    """‖∂L/∂W‖ of every checkpoint tensor, by name."""
    return {n.removeprefix("grad.param."): _norm(trace[n]) for n in trace.names if n.startswith("grad.param.")}


def grad_flow_figure(trace: Trace, lang: str = "en") -> Any:
    """Gradient norm along the residual stream, walking back from the logits to the embedding."""
    go = _go()
    rows = grad_norm_rows(trace)
    fig = go.Figure(go.Scatter(x=[r[0] for r in rows], y=[r[1] for r in rows], mode="lines+markers",
                               name=t("train.fig_stream", lang)))
    fig.update_layout(title=t("train.fig_grad_flow", lang), yaxis_title=t("train.fig_stream", lang), height=380)
    return fig


def layer_grad_rows(trace: Trace) -> list[tuple[str, float]]:
    """‖∂L/∂W‖ of all weights of each layer together (and of the embedding / head / final norm)."""
    out: dict[str, float] = {}
    for name, value in param_grad_norms(trace).items():
        key = "layer " + name.split(".")[2] if name.startswith("model.layers.") else name.removesuffix(".weight")
        out[key] = float(np.hypot(out.get(key, 0.0), value))
    return list(out.items())


def layer_grad_figure(trace: Trace, lang: str = "en") -> Any:
    """Gradient norm of each layer's weights."""
    go = _go()
    rows = layer_grad_rows(trace)
    fig = go.Figure(go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows]))
    fig.update_layout(title=t("train.fig_layer_weights", lang), height=380)
    return fig


def weight_update_figures(before: np.ndarray | None, grad: np.ndarray, delta: np.ndarray | None, name: str,
                          lang: str = "en") -> list[Any]:
    """One weight matrix: before, its gradient, the change the optimizer made, and after (when known)."""
    out = []
    short = name.removeprefix("model.").removesuffix(".weight")
    if before is not None:
        out.append(heatmap(np.asarray(before), title=t("train.fig_before", lang, name=short)))
    out.append(heatmap(np.asarray(grad), title=t("train.fig_grad", lang, name=short)))
    if delta is not None:
        out.append(heatmap(np.asarray(delta), title=t("train.fig_delta", lang, name=short)))
        if before is not None:
            out.append(heatmap(np.asarray(before) + np.asarray(delta), title=t("train.fig_after", lang, name=short)))
    return out


def losses_figure(trace: Trace, lang: str = "en") -> Any:
    """Loss before and after each optimizer step on the same batch."""
    go = _go()
    losses = trace.meta["losses"]
    fig = go.Figure(go.Scatter(x=list(range(len(losses))), y=losses, mode="lines+markers"))
    fig.update_layout(title=t("train.fig_losses", lang), xaxis_title=t("train.fig_step", lang), yaxis_title="L",
                      height=320, xaxis_dtick=1)
    return fig


def dpo_rows(trace: Trace, lang: str = "en") -> list[dict[str, Any]]:
    """Chosen and rejected: summed log-prob under policy and reference, and the implicit reward."""
    return [{t("train.col_answer", lang): t(f"train.{a}", lang),
             "log π": round(float(trace[f"dpo.{a}.logp"]), 5),
             "log π_ref": round(float(trace[f"dpo.{a}.ref_logp"]), 5),
             t("train.col_reward", lang): round(float(trace[f"dpo.{a}.reward"]), 5)} for a in ("chosen", "rejected")]


def dpo_figure(trace: Trace, lang: str = "en") -> Any:
    """Per-token log-probs of the chosen and the rejected answer (policy, first step)."""
    go = _go()
    fig = go.Figure()
    for a in ("chosen", "rejected"):
        info = trace.meta["dpo"][a]
        start, labels = info["answer_start"], info["token_labels"]
        lp = np.asarray(trace[f"dpo.{a}.token_logp"], dtype=np.float64)[start - 1:-1]
        fig.add_bar(x=[f"{k}:{x}" for k, x in enumerate(labels[start:])], y=lp, name=t(f"train.{a}", lang))
    fig.update_layout(title=t("train.fig_dpo", lang), yaxis_title="log π(token)", barmode="group", height=360)
    return fig


def errata_rows(lang: str = "en") -> list[dict[str, str]]:
    """Seed 001's training formulas that are wrong, and what is right."""
    return [{t("train.col_seed_says", lang): t(f"train.errata_{k}_seed", lang),
             t("train.col_right", lang): t(f"train.errata_{k}_right", lang)} for k in ERRATA]
