"""Worked cells of the analyses recorded beside a forward pass: the logit lens (``lens.*``: a block's residual
stream through the final norm and the LM head, its top tokens and their probabilities), direct logit attribution
(``attrib.*``: what each component wrote, read along the target token's direction) and the quantization error of a
weight (``quant.*``, measured when the trace was made).

The LM head is read one row at a time where one token is asked about, and a block of rows at a time where a whole
row of lens logits is (top tokens, softmax over the vocabulary): never the whole matrix at once.
"""

from __future__ import annotations

import math

import numpy as np

from tracer.sources.weights import lm_head_name
from tracer.teaching.worked_core import Cell, Worker, dot_terms, fold, num, short


def _rms(c: Cell, x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The final RMSNorm of one row (identity when the model has none), with its lines."""
    if len(c.inputs) < 3:
        return x, [c.tr("worked.no_final_norm")]
    w = c.param(1, 0)
    eps = c.cfg.rms_norm_eps
    ms = float(np.mean(x * x))
    r = 1.0 / math.sqrt(ms + eps)
    return x * r * w, [c.tr("worked.lens_norm", x=short(c.input(0)), ms=num(ms), eps=f"{eps:g}", r=num(r))]


def _lens_row(c: Cell, t: int) -> tuple[np.ndarray, list[str]]:
    """Row t of block i's lens logits over the whole vocabulary, and the lines saying where it comes from:
    the recorded ``lens.{i}.logits`` or the model's ``logits`` (the last block), else norm and LM head redone,
    the head read a block of rows at a time."""
    source = c.input(0)
    if source.endswith("logits"):
        return c.rec(0)[t], [c.tr("worked.lens_from", t=t, source=source)]
    normed, lines = _rms(c, c.rec(0)[t])
    head = c.input(len(c.inputs) - 1)
    row = np.concatenate([block @ normed for _, block in c.blocks(head)])
    return row, lines + [c.tr("worked.lens_head", t=t, w=head, n=len(row))]


def _op_logit_lens(c: Cell) -> tuple[list[str], float]:
    """ℓ(i)[t,v] = RMSNorm_final(x_i[t]) · W_U[v]."""
    t, v = c.index
    if len(c.inputs) == 1:  # the last block's lens is the model's own logits
        value = float(c.rec(0)[t, v])
        return [c.tr("worked.lens_last", cell=c.label(), t=t, v=v, value=num(value))], value
    normed, lines = _rms(c, c.rec(0)[t])
    head = c.input(len(c.inputs) - 1)
    w = c.weight(head, v)
    value = float(normed @ w)
    return lines + [c.tr("worked.lens_logit", cell=c.label(), t=t, v=v, w=head, n=len(w)),
                    f"= {dot_terms(normed, w)}", f"= {num(value)}"], value


def _ranked(row: np.ndarray) -> np.ndarray:
    """Token ids by logit, best first; ties: the lower id first."""
    return np.lexsort((np.arange(len(row)), -row))


def _op_lens_top_ids(c: Cell) -> tuple[list[str], float]:
    """The token in place j when block i's lens logits of position t are ranked."""
    t, j = c.index
    row, lines = _lens_row(c, t)
    order = _ranked(row)[:c.trace[c.name].shape[-1]]
    listed = fold([f"{int(v)}: {num(float(row[v]))}" for v in order], ", ")
    value = float(order[j])
    return lines + [c.tr("worked.lens_ranked", t=t, ranked=listed),
                    c.tr("worked.lens_pick", cell=c.label(), j=j + 1, v=num(value))], value


def _op_lens_top_probs(c: Cell) -> tuple[list[str], float]:
    """p = e^(ℓ_v − m) / Σ_u e^(ℓ_u − m) over the whole vocabulary, v the token of the same place in top_ids."""
    t, j = c.index
    row, lines = _lens_row(c, t)
    v = int(np.asarray(c.get(c.name[:-len("probs")] + "ids"))[t, j])
    m = float(np.max(row))
    e = np.exp(row - m)
    total = float(np.sum(e))
    value = float(e[v] / total)
    return lines + [c.tr("worked.lens_token", j=j + 1, v=v),
                    c.tr("worked.softmax_max", m=num(m)),
                    c.tr("worked.softmax_sum") + f" = {fold([num(x) for x in e])} = {num(total)}",
                    f"{c.label()} = e^({num(float(row[v]))} − {num(m, True)}) / {num(total)} = {num(float(e[v]))} / "
                    f"{num(total)} = {num(value)}"], value


def _op_attrib_target(c: Cell) -> tuple[list[str], float]:
    """c[t] = argmax of the logits at t (the first on a tie)."""
    (t,) = c.index
    row = c.rec(0)[t]
    best = int(np.argmax(row))
    return [c.tr("worked.target", cell=c.label(), t=t, v=best, l=num(float(row[best])), n=len(row))], float(best)


def _op_frozen_scale(c: Cell) -> tuple[list[str], float]:
    """s[t] = 1/√(mean(x[t]²) + ε) of the last block's output."""
    (t,) = c.index
    x = c.rec(0)[t]
    eps = c.cfg.rms_norm_eps
    ms = float(np.mean(x * x))
    value = 1.0 / math.sqrt(ms + eps)
    squares = fold([f"{num(v, True)}²" for v in x])
    return [c.tr("worked.rms_mean", n=len(x)) + f" = ({squares}) / {len(x)} = {num(ms)}",
            f"{c.label()} = 1/√({num(ms)} + {eps:g}) = {num(value)}   " + c.tr("worked.frozen")], value


def _direction(c: Cell, t: int) -> tuple[np.ndarray, list[str]]:
    """u[t] = s[t] · (w_norm ⊙ W_U[c_t]): the target token's direction through the final norm, its scale frozen
    (W_U[c_t] alone without a final norm)."""
    target = int(np.asarray(c.get(f"{c.prefix}attrib.target_ids"))[t])
    head = lm_head_name(c.cfg)
    row = c.weight(head, target)
    if not c.cfg.final_norm:
        return row, [c.tr("worked.direction_plain", t=t, c=target, w=head)]
    s = float(np.asarray(c.get(f"{c.prefix}attrib.scale"))[t])
    w = c.weight("model.norm.weight", 0)
    return s * w * row, [c.tr("worked.direction", t=t, c=target, w=head, s=num(s))]


def _op_attrib_dot(c: Cell) -> tuple[list[str], float]:
    """a[t] = y[t] · u[t] (the embedding, or a dense MLP's output)."""
    (t,) = c.index
    y = c.rec(0)[t]
    u, lines = _direction(c, t)
    value = float(y @ u)
    return lines + [f"{c.label()} = {c.input(0)}[{t}] · u[{t}] = {dot_terms(y, u)}", f"= {num(value)}"], value


def _op_attrib_heads(c: Cell) -> tuple[list[str], float]:
    """a[h,t] = (C_h[t] · W_O[:, h·Dh:(h+1)·Dh]ᵀ) · u[t]: head h's write into the stream, read along u."""
    h, t = c.index
    context = c.rec(0)
    dh = context.shape[-1]
    wo = c.input(1)
    write = np.concatenate([block[:, h * dh:(h + 1) * dh] @ context[h, t] for _, block in c.blocks(wo)])
    u, lines = _direction(c, t)
    value = float(write @ u)
    return lines + [c.tr("worked.head_write", h=h, t=t, w=wo, a=h * dh, b=(h + 1) * dh - 1,
                         terms=fold([num(float(x), True) for x in write], ", ")),
                    f"{c.label()} = w · u[{t}] = {dot_terms(write, u)}", f"= {num(value)}"], value


def _op_attrib_experts(c: Cell) -> tuple[list[str], float]:
    """a[e,t] = Z_e[t] · u[t], Z_e = gate × expert output scattered back to the rows (0 where not routed)."""
    e, t = c.index
    layer = c.name.split(".")[-2]
    weighted = f"{c.prefix}layers.{layer}.moe.experts.{e}.weighted"
    if weighted not in c.trace:
        return [c.tr("worked.expert_idle", cell=c.label(), e=e)], 0.0
    rows = np.asarray(c.get(f"{c.prefix}layers.{layer}.moe.experts.{e}.token_ids"))
    if t not in rows:
        return [c.tr("worked.weighted_skip", cell=c.label(), t=t, e=e)], 0.0
    z = c.get(weighted)[t]
    u, lines = _direction(c, t)
    value = float(z @ u)
    return lines + [f"{c.label()} = weighted_{e}[{t}] · u[{t}] = {dot_terms(z, u)}", f"= {num(value)}"], value


def _op_quant_error(c: Cell) -> tuple[list[str], float]:
    """Measured when the trace was made, from the two whole tensors (neither is in the trace): where it comes from."""
    (k,) = c.index
    value = float(c.trace[c.name][k])
    keys = ("worked.quant_max", "worked.quant_mean", "worked.quant_rel", "worked.quant_bits")
    return [c.tr(keys[k], cell=c.label(), w=c.input(0), ref=c.trace.meta.get("reference") or "—", v=num(value))], value


INTERP_WORKERS: dict[str, Worker] = {
    "logit_lens": _op_logit_lens, "lens_top_ids": _op_lens_top_ids, "lens_top_probs": _op_lens_top_probs,
    "attrib_target": _op_attrib_target, "frozen_rms_scale": _op_frozen_scale, "attrib_dot": _op_attrib_dot,
    "attrib_heads": _op_attrib_heads, "attrib_experts": _op_attrib_experts, "quant_error": _op_quant_error,
}
