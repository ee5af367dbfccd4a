"""Worked cells of a traced training step (``tracer train-step``): labels, the loss pieces (cross-entropy per token,
the mean over counted tokens, MoE load balancing, DPO and GRPO), every gradient record and the optimizer's update.

A gradient ``grad.x`` is redone by the chain rule over the records computed from ``x`` — each one's backward op
(``tracer.engine.backward_ops``) applied to that record's own recorded gradient — and ``grad.logits`` from the loss.
A weight's gradient ``grad.param.W`` sums its uses the same way. Only the one forward pass a trace keeps can be
redone: for DPO and GRPO the other sequences' passes are not in the trace, and the worked cell says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracer.engine.backward_ops import IGNORE_INDEX
from tracer.engine.train import GRPO_STD_EPS
from tracer.teaching.worked_core import Cell, Worker, dot_terms, fold, num, short, sum_terms

GRAD, UPDATE = "grad.", "update.param."


def _meta(c: Cell) -> dict[str, Any]:
    """The trace's meta: objective, label reasons, sequences, β, optimizer, losses."""
    return c.trace.meta


def _objective(c: Cell) -> str:
    """next_token, sft, dpo or grpo."""
    return str(_meta(c).get("objective") or "next_token")


def _sequence(c: Cell, name: str) -> tuple[list[int], int]:
    """Token ids and answer start of the sequence a ``dpo.{chosen|rejected}.…`` or ``grpo.{c}.…`` record scores."""
    part = name.split(".")[1]
    if name.startswith("dpo."):
        seq = _meta(c)["dpo"][part]
    else:
        seq = _meta(c)["grpo"][int(part)]
    return list(seq["token_ids"]), int(seq["answer_start"])


def _scored(t: int, ids: list[int], start: int) -> bool:
    """Whether position t predicts an answer token (t + 1 in the answer; the last position predicts nothing)."""
    return t + 1 >= start and t < len(ids) - 1


def _log_softmax_lines(c: Cell, z: np.ndarray, y: int) -> tuple[list[str], float]:
    """log softmax(z)[y] = z_y − (m + log Σ e^(z − m)), with its lines."""
    m = float(np.max(z))
    e = np.exp(z - m)
    total = float(np.sum(e))
    lse = m + math.log(total)
    value = float(z[y]) - lse
    return [c.tr("worked.softmax_max", m=num(m)),
            c.tr("worked.softmax_sum") + f" = {fold([num(v) for v in e])} = {num(total)}",
            f"log Σ e^z = m + log Σ e^(z − m) = {num(m)} + {num(math.log(total), True)} = {num(lse)}",
            f"log p[{y}] = z[{y}] − log Σ e^z = {num(float(z[y]))} − {num(lse, True)} = {num(value)}"], value


# ---------------------------------------------------------------------------------------------------
# Labels and losses
# ---------------------------------------------------------------------------------------------------


def _op_label_shift(c: Cell) -> tuple[list[str], float]:
    """labels[t] = ids[t+1] where counted, else −100 (the meta's label_reasons say why)."""
    (t,) = c.index
    ids = np.asarray(c.rec(0))
    reasons = _meta(c).get("label_reasons") or []
    reason = reasons[t] if t < len(reasons) else ("last" if t == len(ids) - 1 else "counted")
    if reason == "counted":
        value = float(ids[t + 1])
        return [c.tr("worked.label_counted", cell=c.label(), t=t, n=t + 1, v=num(value))], value
    key = "worked.label_last" if reason == "last" else "worked.label_masked"
    return [c.tr(key, cell=c.label(), t=t, v=num(IGNORE_INDEX))], float(IGNORE_INDEX)


def _op_token_ce(c: Cell) -> tuple[list[str], float]:
    """ℓ[t] = −log softmax(z_t)[y_t]; 0 where the label is −100."""
    (t,) = c.index
    y = int(c.rec(1)[t])
    if y == IGNORE_INDEX:
        return [c.tr("worked.ce_skip", cell=c.label(), t=t)], 0.0
    lines, logp = _log_softmax_lines(c, c.rec(0)[t], y)
    value = -logp
    return [c.tr("worked.ce_target", t=t, y=y)] + lines + [f"{c.label()} = −log p[{y}] = {num(value)}"], value


def _op_mean_loss(c: Cell) -> tuple[list[str], float]:
    """L = Σ ℓ[t] / N over counted positions (+ coef · aux); ``train.loss_after``: the loss of a new pass."""
    if c.short == "loss_after":
        losses = [float(v) for v in _meta(c).get("losses") or []]
        value = losses[-1] if losses else float(c.trace[c.name])
        steps = (_meta(c).get("optimizer") or {}).get("steps", len(losses) - 1)
        return [c.tr("worked.loss_after", cell=c.label(), k=steps, losses=", ".join(num(v) for v in losses),
                     v=num(value))], value
    token_loss = c.get("train.token_loss")
    counted = np.asarray(c.get("train.labels")) != IGNORE_INDEX
    n = int(np.sum(counted))
    ce = float(np.sum(token_loss)) / n
    lines = [c.tr("worked.mean_loss", n=n),
             f"CE = ({sum_terms(token_loss[counted])}) / {n} = {num(ce)}"]
    if "train.aux_loss" not in c.inputs:
        return lines + [f"{c.label()} = {num(ce)}"], ce
    coef = float(_meta(c).get("router_aux_loss_coef", 0.0))
    aux = float(c.get("train.aux_loss"))
    value = ce + coef * aux
    return lines + [f"{c.label()} = CE + coef·aux = {num(ce)} + {coef:g}·{num(aux)} = {num(value)}"], value


def _router_inputs(c: Cell) -> list[str]:
    """The sparse layers' ``moe.router_probs`` records the load-balancing loss pools."""
    return [n for n in c.inputs if n.endswith("router_probs")]


def _op_aux_f(c: Cell) -> tuple[list[str], float]:
    """f[e] = top-k slots given to e over every sparse layer's rows / R."""
    (e,) = c.index
    counts, rows = [], 0
    for name in _router_inputs(c):
        ids = np.asarray(c.get(name.replace("router_probs", "topk_ids")))
        counts.append(int(np.sum(ids == e)))
        rows += len(ids)
    value = sum(counts) / rows
    return [c.tr("worked.aux_f", e=e, rows=rows, layers=len(counts)),
            f"{c.label()} = ({' + '.join(map(str, counts))}) / {rows} = {num(value)}"], value


def _op_aux_p(c: Cell) -> tuple[list[str], float]:
    """P[e] = Σ_r p[r,e] over every sparse layer's rows / R."""
    (e,) = c.index
    column = np.concatenate([c.get(name)[:, e] for name in _router_inputs(c)])
    value = float(np.sum(column)) / len(column)
    return [c.tr("worked.aux_p", e=e, rows=len(column)),
            f"{c.label()} = ({sum_terms(column)}) / {len(column)} = {num(value)}"], value


def _op_aux_loss(c: Cell) -> tuple[list[str], float]:
    """aux = E · Σ_e f[e]·P[e]."""
    f, p = c.rec(0), c.rec(1)
    value = len(f) * float(f @ p)
    return [f"{c.label()} = E·Σ_e f[e]·P[e] = {len(f)}·({dot_terms(f, p)}) = {len(f)}·{num(float(f @ p))} = "
            f"{num(value)}"], value


def _op_token_logprob(c: Cell) -> tuple[list[str], float]:
    """log π(y) of answer token t + 1 at position t (0 outside the answer), from the recorded logits when this
    sequence's pass is the one the trace keeps."""
    (t,) = c.index
    ids, start = _sequence(c, c.name)
    if not _scored(t, ids, start):
        return [c.tr("worked.logp_skip", cell=c.label(), t=t, s=start)], 0.0
    if ids != list(_meta(c)["token_ids"]):
        value = float(c.trace[c.name][t])
        return [c.tr("worked.other_pass", cell=c.label(), v=num(value))], value
    y = ids[t + 1]
    lines, value = _log_softmax_lines(c, c.get("logits")[t], y)
    return [c.tr("worked.logp_target", t=t, y=y)] + lines + [f"{c.label()} = {num(value)}"], value


def _answer_logps(c: Cell, record: str) -> tuple[np.ndarray, list[int]]:
    """A ``…token_logp`` record and the positions that score its answer tokens."""
    ids, start = _sequence(c, record)
    positions = [t for t in range(len(ids)) if _scored(t, ids, start)]
    return c.get(record), positions


def _op_sum_logprob(c: Cell) -> tuple[list[str], float]:
    """log π(y|x) = Σ_t log π(y_t); under the reference (the starting weights) the same sum: this step's policy
    pass runs on the starting weights too."""
    answer = c.name.split(".")[1]
    token_logp, positions = _answer_logps(c, f"dpo.{answer}.token_logp")
    value = float(np.sum(token_logp, dtype=np.float64))
    lines = [c.tr("worked.ref_same")] if c.short == "ref_logp" else []
    return lines + [f"{c.label()} = Σ_t token_logp[t] (t = {positions[0]}…{positions[-1]}) = "
                    f"{sum_terms(token_logp[positions])} = {num(value)}"], value


def _op_dpo_reward(c: Cell) -> tuple[list[str], float]:
    """r = β·(log π − log π_ref)."""
    beta = float(_meta(c)["beta"])
    logp, ref = float(c.rec(0)), float(c.rec(1))
    value = beta * (logp - ref)
    return [f"{c.label()} = β·(log π − log π_ref) = {beta:g}·({num(logp)} − {num(ref, True)}) = {num(value)}"], value


def _op_dpo_loss(c: Cell) -> tuple[list[str], float]:
    """L = −log σ(r_chosen − r_rejected)."""
    chosen, rejected = float(c.rec(0)), float(c.rec(1))
    margin = chosen - rejected
    value = float(np.logaddexp(0.0, -margin))
    return [f"m = r_chosen − r_rejected = {num(chosen)} − {num(rejected, True)} = {num(margin)}",
            f"{c.label()} = −log σ(m) = log(1 + e^(−m)) = log(1 + {num(math.exp(-margin))}) = {num(value)}"], value


def _op_grpo_advantage(c: Cell) -> tuple[list[str], float]:
    """A_i = (r_i − mean r) / (std r + 1e-4), std with n − 1."""
    (i,) = c.index
    rewards = c.rec(0)
    mean = float(np.mean(rewards))
    std = float(np.std(rewards, ddof=1))
    value = (float(rewards[i]) - mean) / (std + GRPO_STD_EPS)
    return [f"mean r = ({sum_terms(rewards)}) / {len(rewards)} = {num(mean)}",
            c.tr("worked.grpo_std") + f" = {num(std)}",
            f"{c.label()} = (r[{i}] − mean) / (std + 1e-4) = ({num(float(rewards[i]))} − {num(mean, True)}) / "
            f"({num(std)} + 0.0001) = {num(value)}"], value


def _op_grpo_token_loss(c: Cell) -> tuple[list[str], float]:
    """ℓ[t] = −ρ·A of the completion at its answer positions (ρ = 1), else 0."""
    (t,) = c.index
    ids, start = _sequence(c, c.name)
    if not _scored(t, ids, start):
        return [c.tr("worked.logp_skip", cell=c.label(), t=t, s=start)], 0.0
    k = int(c.name.split(".")[1])
    advantage = float(c.rec(1)[k])
    value = -advantage
    return [c.tr("worked.grpo_ratio"), f"{c.label()} = −ρ·A[{k}] = −1·{num(advantage, True)} = {num(value)}"], value


def _grpo_total(c: Cell) -> int:
    """All completion tokens of the group: the GRPO loss's denominator."""
    return sum(len(s["token_ids"]) - int(s["answer_start"]) for s in _meta(c)["grpo"])


def _op_grpo_loss(c: Cell) -> tuple[list[str], float]:
    """L = Σ of every completion token's loss / all completion tokens."""
    sums = [float(np.sum(c.get(name))) for name in c.inputs]
    total = _grpo_total(c)
    value = sum(sums) / total
    return [c.tr("worked.grpo_loss", n=total),
            f"{c.label()} = ({sum_terms(np.array(sums))}) / {total} = {num(value)}"], value


# ---------------------------------------------------------------------------------------------------
# Gradients of records: the chain rule over the records computed from one
# ---------------------------------------------------------------------------------------------------


def _probs_softmax(z: np.ndarray) -> np.ndarray:
    """softmax of one row of logits."""
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def _dlogits(c: Cell) -> tuple[list[str], float]:
    """∂L/∂logits[t,v] from the loss: (p − onehot)/N for cross-entropy; d·(onehot − p) for a sequence log-prob
    term of DPO (d = −β·σ(−m)) or GRPO (d = −A/N)."""
    t, v = c.index
    z = c.get(f"{c.prefix}logits")[t]
    p = float(_probs_softmax(z)[v])
    objective = _objective(c)
    if objective in ("dpo", "grpo"):
        ids = list(_meta(c)["token_ids"])
        start = int((_meta(c)["dpo"]["chosen"] if objective == "dpo" else _meta(c)["grpo"][0])["answer_start"])
        if not _scored(t, ids, start):
            return [c.tr("worked.grad_unscored", cell=c.label(), t=t)], 0.0
        y = ids[t + 1]
        if objective == "dpo":
            margin = float(c.get("dpo.chosen.reward")) - float(c.get("dpo.rejected.reward"))
            beta = float(_meta(c)["beta"])
            d = -beta / (1.0 + math.exp(margin))
            head = f"d = ∂L/∂log π(chosen) = −β·σ(−m) = −{beta:g}·σ({num(-margin)}) = {num(d)}"
        else:
            advantage = float(c.get("grpo.advantages")[0])
            total = _grpo_total(c)
            d = -advantage / total
            head = f"d = ∂L/∂log π = −A[0]/N = −{num(advantage, True)}/{total} = {num(d)}"
        hot = 1.0 if v == y else 0.0
        value = d * (hot - p)
        return [head, c.tr("worked.grad_logprob", t=t, y=y),
                f"{c.label()} = d·([{v} = {y}] − p[{v}]) = {num(d)}·({num(hot)} − {num(p)}) = {num(value)}"], value
    y = int(c.get("train.labels")[t])
    if y == IGNORE_INDEX:
        return [c.tr("worked.grad_unscored", cell=c.label(), t=t)], 0.0
    n = int(np.sum(np.asarray(c.get("train.labels")) != IGNORE_INDEX))
    hot = 1.0 if v == y else 0.0
    value = (p - hot) / n
    return [c.tr("worked.grad_ce", t=t, y=y, n=n),
            f"p[{v}] = e^(z[{v}] − m) / Σ e^(z − m) = {num(p)}",
            f"{c.label()} = (p[{v}] − [{v} = {y}]) / N = ({num(p)} − {num(hot)}) / {n} = {num(value)}"], value


def _consumers(c: Cell, x: str) -> list[str]:
    """The records computed from ``x`` whose gradients the backward pass used for ``grad.x``: those listing it
    as an input and holding a gradient; the top-k weights count as computed from the router probabilities
    (the engine differentiates w = P[ids] / Σ P[ids], the same numbers as the softmax of the chosen logits)."""
    names = c.trace.info
    out = [n for n in names if not n.startswith(GRAD) and x in names[n]["inputs"] and GRAD + n in names
           and names[n]["op"] != "top_k_weights"]
    if x.endswith("moe.router_probs"):
        weights = x[:-len("router_probs")] + "topk_weights"
        if GRAD + weights in names and weights not in out:
            out.append(weights)
    return out


def _grad(c: Cell, y: str) -> np.ndarray:
    """∂L/∂y: the record ``grad.y``."""
    return c.get(GRAD + y)


def _route(c: Cell, x: str, y: str) -> tuple[str, float] | None:
    """The share of ∂L/∂x[cell] that flows back through record y: its line and value (None: no share at this
    cell, e.g. another expert's column)."""
    info = c.trace.info[y]
    op, inputs, idx = info["op"], info["inputs"], c.index
    dy = _grad(c, y)
    if op in ("linear", "router", "linear_heads") and inputs[0] == x:  # dX = dY·W: column i of the stored W
        t, i = idx
        row = dy[:, t, :].reshape(-1) if op == "linear_heads" else dy[t]
        col = c.column(inputs[1], i)
        part = float(row @ col)
        return f"Σ_o d{short(y)}[{t},o]·W[{i},o] = {dot_terms(row, col)} = {num(part)}", part
    if op == "linear_merge":  # dC[h,t,j] = Σ_o dO[t,o]·W_O[h·Dh + j, o]
        h, t, j = idx
        k = h * c.trace[x].shape[-1] + j
        col = c.column(inputs[1], k)
        part = float(dy[t] @ col)
        return f"Σ_o d{short(y)}[{t},o]·W[{k},o] = {dot_terms(dy[t], col)} = {num(part)}", part
    if op == "expert_linear":
        if inputs[0] != x:
            return None
        if len(inputs) == 3:  # gate / up read the normed stream's routed rows: token t is row r of expert e
            t, i = idx
            hit = np.flatnonzero(np.asarray(c.get(inputs[1])) == t)
            if not hit.size:
                return None
            r = int(hit[0])
            col = c.column(inputs[2], i)
            part = float(dy[r] @ col)
            return f"Σ_o d{short(y)}[{r},o]·W[{i},o] = {dot_terms(dy[r], col)} = {num(part)}", part
        r, i = idx
        col = c.column(inputs[1], i)
        part = float(dy[r] @ col)
        return f"Σ_o d{short(y)}[{r},o]·W[{i},o] = {dot_terms(dy[r], col)} = {num(part)}", part
    if op in ("rms_norm", "l2_norm"):
        *lead, j = idx
        xr, g = c.get(x)[tuple(lead)], dy[tuple(lead)] * c.weight(inputs[1], 0)
        if op == "rms_norm":
            r = 1.0 / math.sqrt(float(np.mean(xr * xr)) + c.cfg.rms_norm_eps)
            xhat = xr * r
            mean = float(np.mean(g * xhat))
            part = r * (float(g[j]) - float(xhat[j]) * mean)
            return (f"r·(g[{j}] − x̂[{j}]·mean(g⊙x̂)), g = d{short(y)}⊙w, x̂ = x·r: {num(r)}·({num(float(g[j]))} − "
                    f"{num(float(xhat[j]), True)}·{num(mean, True)}) = {num(part)}"), part
        norm = float(np.sqrt(np.sum(xr * xr)))
        n = max(norm, c.cfg.rms_norm_eps)
        u = xr / n
        dot = float(np.sum(g * u))
        part = (float(g[j]) - float(u[j]) * dot) / n if norm > c.cfg.rms_norm_eps else float(g[j]) / n
        return (f"(g[{j}] − u[{j}]·(g·u)) / ‖x‖, g = d{short(y)}⊙w, u = x/‖x‖: ({num(float(g[j]))} − "
                f"{num(float(u[j]), True)}·{num(dot, True)}) / {num(n)} = {num(part)}"), part
    if op == "apply_rope":
        h, t, j = idx
        cos, sin = c.get(inputs[1])[t], c.get(inputs[2])[t]
        half = len(cos) // 2
        k, sign = (j + half, 1.0) if j < half else (j - half, -1.0)
        part = float(dy[h, t, j] * cos[j] + sign * dy[h, t, k] * sin[k])
        op_sign = "+" if sign > 0 else "−"
        return (f"d{short(y)}[{j}]·cos[{j}] {op_sign} d{short(y)}[{k}]·sin[{k}] = {num(float(dy[h, t, j]), True)}·"
                f"{num(float(cos[j]), True)} {op_sign} {num(float(dy[h, t, k]), True)}·{num(float(sin[k]), True)} = "
                f"{num(part)}"), part
    if op == "attention_scores":
        q, k = c.get(inputs[0]), c.get(inputs[1])
        group = q.shape[0] // k.shape[0]
        scale = q.shape[-1] ** -0.5
        if inputs[0] == x:
            h, t, j = idx
            keys = k[h // group, :, j]
            part = scale * float(dy[h, t] @ keys)
            return f"(Σ_s dS[{h},{t},s]·k[{h // group},s,{j}])·{num(scale)} = ({dot_terms(dy[h, t], keys)})·" \
                   f"{num(scale)} = {num(part)}", part
        g, s, j = idx
        heads = range(g * group, (g + 1) * group)
        column = np.concatenate([dy[h, :, s] for h in heads])
        queries = np.concatenate([q[h, :, j] for h in heads])
        part = scale * float(column @ queries)
        return f"(Σ_h Σ_t dS[h,t,{s}]·q[h,t,{j}], h = {heads[0]}…{heads[-1]})·{num(scale)} = " \
               f"({dot_terms(column, queries)})·{num(scale)} = {num(part)}", part
    if op in ("add", "sum_experts"):
        part = float(dy[idx])
        return f"d{short(y)}{list(idx)} = {num(part)}", part
    if op == "softmax":
        *lead, j = idx
        p, dp = c.get(y)[tuple(lead)], dy[tuple(lead)]
        inner = float(dp @ p)
        part = float(p[j] * (dp[j] - inner))
        return (f"P[{j}]·(dP[{j}] − Σ dP·P) = {num(float(p[j]))}·({num(float(dp[j]))} − {num(inner, True)}), "
                f"Σ dP·P = {dot_terms(dp, p)}: {num(part)}"), part
    if op == "attention_context":
        probs, v = c.get(inputs[0]), c.get(inputs[1])
        group = probs.shape[0] // v.shape[0]
        if inputs[0] == x:
            h, t, s = idx
            values = v[h // group, s]
            part = float(dy[h, t] @ values)
            return f"Σ_j dC[{h},{t},j]·v[{h // group},{s},j] = {dot_terms(dy[h, t], values)} = {num(part)}", part
        g, s, j = idx
        heads = range(g * group, (g + 1) * group)
        weights = np.concatenate([probs[h, :, s] for h in heads])
        grads = np.concatenate([dy[h, :, j] for h in heads])
        part = float(weights @ grads)
        return f"Σ_h Σ_t A[h,t,{s}]·dC[h,t,{j}] = {dot_terms(weights, grads)} = {num(part)}", part
    if op == "swiglu":
        g, u, df = float(c.get(inputs[0])[idx]), float(c.get(inputs[1])[idx]), float(dy[idx])
        sig = 1.0 / (1.0 + math.exp(-g))
        if inputs[0] == x:
            part = df * u * sig * (1.0 + g * (1.0 - sig))
            return (f"dF·u·σ(g)·(1 + g·(1 − σ(g))) = {num(df)}·{num(u, True)}·{num(sig)}·(1 + {num(g, True)}·"
                    f"(1 − {num(sig)})) = {num(part)}"), part
        part = df * g * sig
        return f"dF·silu(g) = {num(df)}·{num(g, True)}·{num(sig)} = {num(part)}", part
    if op == "relu":
        value = float(c.get(x)[idx])
        part = float(dy[idx]) if value > 0 else 0.0
        return f"d{short(y)}{list(idx)}·[{num(value)} > 0] = {num(float(dy[idx]))}·{int(value > 0)} = {num(part)}", part
    if op == "expert_weighted":
        e = int(y.split(".")[-2])
        rows = np.asarray(c.get(inputs[1]))
        if inputs[0] == x:  # the gate weights: only expert e's column, only its rows
            t, col = idx
            hit = np.flatnonzero(rows == t)
            if col != e or not hit.size:
                return None
            out = c.get(inputs[2])[int(hit[0])]
            part = float(dy[t] @ out)
            return f"Σ_d dZ[{t},d]·y_{e}[{int(hit[0])},d] = {dot_terms(dy[t], out)} = {num(part)}", part
        r, d = idx
        t = int(rows[r])
        gate = float(c.get(inputs[0])[t, e])
        part = gate * float(dy[t, d])
        return f"G[{t},{e}]·dZ[{t},{d}] = {num(gate)}·{num(float(dy[t, d]), True)} = {num(part)}", part
    if op == "scatter_gates":
        t, j = idx
        e = int(np.asarray(c.get(inputs[0]))[t, j])
        part = float(dy[t, e])
        return f"dG[{t}, ids[{t},{j}] = {e}] = {num(part)}", part
    if op in ("top_k_weights", "top_k_weights_raw"):  # y = topk_weights, x = router_probs
        t, e = idx
        ids = np.asarray(c.get(y[:-len("topk_weights")] + "topk_ids"))[t]
        hit = np.flatnonzero(ids == e)
        if not hit.size:
            return None
        j = int(hit[0])
        if op == "top_k_weights_raw":
            part = float(dy[t, j])
            return f"dw[{t},{j}] = {num(part)}", part
        chosen = c.get(x)[t, ids]
        total = float(np.sum(chosen))
        inner = float(dy[t] @ (chosen / total))
        part = (float(dy[t, j]) - inner) / total
        return (f"(dw[{t},{j}] − Σ_k dw[{t},k]·w[{t},k]) / Σ_k P[{t},ids_k] = ({num(float(dy[t, j]))} − "
                f"{num(inner, True)}) / {num(total)} = {num(part)}   (w = P[ids] / Σ P[ids])"), part
    return None


def _aux_share(c: Cell) -> tuple[str, float] | None:
    """The load-balancing loss's share of ∂L/∂router_probs[t,e]: coef · E · f[e] / R."""
    if "train.aux_f" not in c.trace:
        return None
    f = c.get("train.aux_f")
    coef = float(_meta(c).get("router_aux_loss_coef", 0.0))
    rows = sum(c.trace[n].shape[0] for n in c.trace.info["train.aux_p"]["inputs"])
    e = c.index[-1]
    part = coef * len(f) * float(f[e]) / rows
    return f"coef·E·f[{e}]/R = {coef:g}·{len(f)}·{num(float(f[e]))}/{rows} = {num(part)}", part


def _op_backward(c: Cell) -> tuple[list[str], float]:
    """∂L/∂x[cell] = Σ over the records y computed from x of (∂y/∂x)ᵀ·∂L/∂y at this cell."""
    x = c.input(0)
    if x == f"{c.prefix}logits":
        return _dlogits(c)
    lines = [c.tr("worked.chain", cell=c.label(), x=x)]
    parts = []
    for y in _consumers(c, x):
        share = _route(c, x, y)
        if share is not None:
            lines.append(c.tr("worked.via", y=y, op=c.trace.info[y]["op"]) + f" {share[0]}")
            parts.append(share[1])
    if x.endswith("moe.router_probs"):
        share = _aux_share(c)
        if share is not None:
            lines.append(c.tr("worked.via_aux") + f" {share[0]}")
            parts.append(share[1])
    value = float(sum(parts))
    if not parts:
        return lines + [c.tr("worked.grad_none", cell=c.label())], 0.0
    if len(parts) == 1:
        return lines + [f"{c.label()} = {num(value)}"], value
    return lines + [f"{c.label()} = {' + '.join(num(p, True) for p in parts)} = {num(value)}"], value


# ---------------------------------------------------------------------------------------------------
# Gradients of weights and the optimizer's update
# ---------------------------------------------------------------------------------------------------


def _weight_share(c: Cell, w: str, y: str) -> tuple[str, float] | None:
    """∂L/∂W[cell] through one record y that reads W."""
    info = c.trace.info[y]
    op, inputs, idx = info["op"], info["inputs"], c.index
    dy = _grad(c, y)
    if op in ("linear", "router", "linear_heads", "linear_merge", "expert_linear"):
        if inputs[-1] == w and len(inputs) == 3 and op == "router":  # the router's bias
            (o,) = idx
            part = float(np.sum(dy[:, o]))
            return f"Σ_t d{short(y)}[t,{o}] = {sum_terms(dy[:, o])} = {num(part)}", part
        o, i = idx
        x = c.get(inputs[0])
        if op == "linear_heads":
            dh = dy.shape[-1]
            grads = dy[o // dh, :, o % dh]
        else:
            grads = dy[:, o]
        if op == "linear_merge":
            dh = x.shape[-1]
            xs = x[i // dh, :, i % dh]
        elif op == "expert_linear" and len(inputs) == 3:
            xs = x[np.asarray(c.get(inputs[1])), i]
        else:
            xs = x[:, i]
        part = float(grads @ xs)
        return f"Σ_t d{short(y)}[t,{o}]·{short(inputs[0])}[t,{i}] = {dot_terms(grads, xs)} = {num(part)}", part
    if op in ("rms_norm", "l2_norm"):
        (j,) = idx
        x = c.get(inputs[0])
        if op == "rms_norm":
            xhat = x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + c.cfg.rms_norm_eps))
        else:
            xhat = x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), c.cfg.rms_norm_eps)
        grads, normed = dy[..., j].reshape(-1), xhat[..., j].reshape(-1)
        part = float(grads @ normed)
        return f"Σ_rows d{short(y)}[…,{j}]·x̂[…,{j}] = {dot_terms(grads, normed)} = {num(part)}", part
    if op == "embedding":
        v, d = idx
        ids = np.asarray(c.get(inputs[0]))
        rows = np.flatnonzero(ids == v)
        part = float(np.sum(dy[rows, d]))
        if not rows.size:
            return c.tr("worked.token_absent", v=v), 0.0
        return f"Σ_(t: ids[t] = {v}) d{short(y)}[t,{d}] (t = {', '.join(map(str, rows))}) = " \
               f"{sum_terms(dy[rows, d])} = {num(part)}", part
    return None


def _op_param_grad(c: Cell) -> tuple[list[str], float]:
    """∂L/∂W[cell] = Σ over the records that read W of that record's share; for DPO and GRPO the other sequences'
    passes, not kept in the trace, add the rest."""
    w = c.input(0)
    names = c.trace.info
    uses = [n for n in names if not n.startswith((GRAD, UPDATE)) and w in names[n]["inputs"] and GRAD + n in names]
    lines = [c.tr("worked.param_chain", cell=c.label(), w=w)]
    parts = []
    for y in uses:
        share = _weight_share(c, w, y)
        if share is not None:
            lines.append(c.tr("worked.via", y=y, op=names[y]["op"]) + f" {share[0]}")
            parts.append(share[1])
    value = float(sum(parts))
    if not parts:
        lines.append(c.tr("worked.param_unused", cell=c.label(), w=w))
    elif len(parts) > 1:
        lines.append(f"= {' + '.join(num(p, True) for p in parts)} = {num(value)}")
    else:
        lines.append(f"{c.label()} = {num(value)}")
    if _objective(c) in ("dpo", "grpo"):
        recorded = float(c.trace[c.name][c.index])
        lines.append(c.tr("worked.other_passes", cell=c.label(), part=num(value), rest=num(recorded - value),
                          v=num(recorded)))
        value = recorded
    return lines, value


def _op_param_update(c: Cell) -> tuple[list[str], float]:
    """ΔW of one optimizer step from W and its gradient: SGD −lr·(g + wd·W); AdamW's first step
    −lr·wd·W − lr·g/(|g| + ε) (m̂ = g, √v̂ = |g|). Later steps' gradients come from new passes not in the trace."""
    opt = _meta(c)["optimizer"]
    lr, wd, eps, steps = float(opt["lr"]), float(opt["weight_decay"]), float(opt["eps"]), int(opt["steps"])
    w_name = c.name[len(UPDATE):]
    g = float(c.rec(0)[c.index])
    row = c.weight(w_name, c.index[0] if len(c.index) > 1 else 0)
    w = float(row[c.index[-1]])
    if opt["kind"] == "sgd":
        first = -lr * (g + wd * w)
        line = f"ΔW₁ = −lr·(g + wd·W) = −{lr:g}·({num(g)} + {wd:g}·{num(w, True)}) = {num(first)}"
    else:
        first = -lr * wd * w - lr * g / (abs(g) + eps)
        line = (f"ΔW₁ = −lr·wd·W − lr·g/(|g| + ε) = −{lr:g}·{wd:g}·{num(w, True)} − {lr:g}·{num(g, True)}/"
                f"({num(abs(g))} + {eps:g}) = {num(first)}")
    lines = [c.tr("worked.update_" + ("sgd" if opt["kind"] == "sgd" else "adamw"), w=num(w), g=num(g)), line]
    if steps == 1:
        return lines + [f"{c.label()} = {num(first)}"], first
    value = float(c.trace[c.name][c.index])
    return lines + [c.tr("worked.update_steps", cell=c.label(), k=steps, v=num(value))], value


TRAIN_WORKERS: dict[str, Worker] = {
    "label_shift": _op_label_shift, "token_cross_entropy": _op_token_ce, "mean_loss": _op_mean_loss,
    "aux_f": _op_aux_f, "aux_p": _op_aux_p, "aux_loss": _op_aux_loss, "token_logprob": _op_token_logprob,
    "sum_logprob": _op_sum_logprob, "dpo_reward": _op_dpo_reward, "dpo_loss": _op_dpo_loss,
    "grpo_advantage": _op_grpo_advantage, "grpo_token_loss": _op_grpo_token_loss, "grpo_loss": _op_grpo_loss,
    "backward": _op_backward, "param_grad": _op_param_grad, "param_update": _op_param_update,
}
