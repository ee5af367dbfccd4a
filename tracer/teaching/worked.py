"""Redo one cell of any record by hand: the formula of that cell with the real numbers substituted.

``work_cell(trace, "layers.0.attn.q_proj", (0, 2, 1))`` gives the lines a student would write —
``q_proj[0,2,1] = Σ_d x[2,d]·W[d,1] = 0.12·0.30 + (−0.41)·0.05 + … = 0.457`` — and the value they lead to,
next to the recorded one. The arithmetic is redone here in float64 from the recorded inputs, op by op, the
way the seed documents write it: row vectors, ``x · W`` with ``W`` as ``[in, out]`` (a checkpoint stores the
transpose, ``[out, in]``; row ``o`` of the stored tensor is column ``o`` of the seed's ``W``).

Parameters are read lazily, one row at a time (``Params``): from the toy presets' tables, regenerated from the
preset's seed (only the prefix of the random stream up to that row), or memory-mapped from a checkpoint.

This module holds the workers of the text forward pass and ``work_cell``; ``tracer.teaching.worked_core`` what they are
built from; ``tracer.teaching.worked_vision``, ``tracer.teaching.worked_train`` and ``tracer.teaching.worked_interp`` the workers of the
Qwen3-VL vision path, the training step, and the logit lens / attribution / quantization error. ``WORKERS``
joins them: every op of the schema has one.
"""

from __future__ import annotations

import math

import numpy as np

from tracer import TracerError
from tracer.i18n import translator
from tracer.teaching.worked_core import FOLD, Cell, Params, Worked, Worker, dot_terms, fold, linear_line, num, plus_bias
from tracer.teaching.worked_interp import INTERP_WORKERS
from tracer.teaching.worked_train import TRAIN_WORKERS
from tracer.teaching.worked_vision import VISION_WORKERS
from tracer.traces.tracefile import Trace

__all__ = ["FOLD", "WORKERS", "Params", "Worked", "fold", "num", "parameters", "work_cell"]

def _op_linear(c: Cell) -> tuple[list[str], float]:
    """Projections [T, out] (also the LM head and the router): y[t,o] = Σ_d x[t,d]·W[d,o] (+ b[o])."""
    *lead, o = c.index
    x_all = c.rec(0)
    t = lead[-1] if lead else 0
    x = x_all[t]
    w = c.param(1, o)
    lines, value = linear_line(c, x, c.inputs[1], o, w, f"{c.inputs[0].split('.')[-1]}[{t},d]")
    if len(c.inputs) > 2:  # the router's bias, where the model has one
        line, value = plus_bias(c, value, 2, o)
        lines.append(line)
    return lines, value


def _op_linear_heads(c: Cell) -> tuple[list[str], float]:
    h, t, j = c.index
    dh = c.trace[c.name].shape[-1]
    o = h * dh + j
    x = c.rec(0)[t]
    w = c.param(1, o)
    lines, value = linear_line(c, x, c.inputs[1], o, w, f"{c.inputs[0].split('.')[-1]}[{t},d]")
    return [c.tr("worked.heads", o=o, h=h, dh=dh, j=j)] + lines, value


def _op_linear_merge(c: Cell) -> tuple[list[str], float]:
    t, o = c.index
    context = c.rec(0)
    x = context[:, t, :].reshape(-1)
    w = c.param(1, o)
    lines, value = linear_line(c, x, c.inputs[1], o, w, f"concat_h(context)[{t},d]")
    if len(c.inputs) > 2:  # the vision blocks' output projection has a bias
        line, value = plus_bias(c, value, 2, o)
        lines.append(line)
    return lines, value


def _op_expert_linear(c: Cell) -> tuple[list[str], float]:
    r, o = c.index
    if len(c.inputs) == 3:  # gate / up: the normed stream's rows routed here
        rows = np.asarray(c.trace[c.inputs[1]])
        x = c.rec(0)[int(rows[r])]
        label = f"{c.inputs[0].split('.')[-1]}[{int(rows[r])},d]"
        w = c.param(2, o)
        w_name = c.inputs[2]
    else:
        x = c.rec(0)[r]
        label = f"act[{r},d]"
        w = c.param(1, o)
        w_name = c.inputs[1]
    return linear_line(c, x, w_name, o, w, label)


def _op_rms_norm(c: Cell) -> tuple[list[str], float]:
    *lead, j = c.index
    x = c.rec(0)[tuple(lead)]
    w = c.param(1, 0)
    eps = c.cfg.rms_norm_eps
    ms = float(np.mean(x * x))
    r = 1.0 / math.sqrt(ms + eps)
    value = float(x[j] * r * w[j])
    squares = fold([f"{num(v, True)}²" for v in x])
    return [c.tr("worked.rms_mean", n=len(x)) + f" = ({squares}) / {len(x)} = {num(ms)}",
            c.tr("worked.rms_inv") + f" = 1/√({num(ms)} + {eps:g}) = {num(r)}",
            f"{c.label()} = x[{j}]·r·w[{j}] = {num(x[j], True)}·{num(r)}·{num(w[j], True)} = {num(value)}"], value


def _op_l2_norm(c: Cell) -> tuple[list[str], float]:
    *lead, j = c.index
    x = c.rec(0)[tuple(lead)]
    w = c.param(1, 0)
    norm = float(np.sqrt(np.sum(x * x)))
    value = float(x[j] / max(norm, c.cfg.rms_norm_eps) * w[j])
    return [f"‖x‖ = √({fold([f'{num(v, True)}²' for v in x])}) = {num(norm)}",
            f"{c.label()} = x[{j}] / ‖x‖ · w[{j}] = {num(x[j], True)} / {num(norm)} · {num(w[j], True)} = {num(value)}"
            ], value


def _op_apply_rope(c: Cell) -> tuple[list[str], float]:
    h, t, j = c.index
    x = c.rec(0)[h, t]
    cos, sin = c.rec(1)[t], c.rec(2)[t]
    half = len(x) // 2
    angle = math.degrees(math.atan2(sin[j], cos[j]))
    if j < half:
        partner, sign = j + half, -1.0
    else:
        partner, sign = j - half, 1.0
    value = float(x[j] * cos[j] + sign * x[partner] * sin[j])
    op = "−" if sign < 0 else "+"
    return [c.tr("worked.rope_pair", j=min(j, partner), k=max(j, partner), angle=f"{angle:.2f}"),
            f"{c.label()} = x[{j}]·cos φ {op} x[{partner}]·sin φ = {num(x[j], True)}·{num(cos[j], True)} {op} "
            f"{num(x[partner], True)}·{num(sin[j], True)} = {num(value)}"], value


def _op_scores(c: Cell) -> tuple[list[str], float]:
    h, t, s = c.index
    q, k = c.rec(0), c.rec(1)
    group = q.shape[0] // k.shape[0]
    g = h // group
    dh = q.shape[-1]  # the text model's head_dim, or the vision tower's
    scale = dh ** -0.5
    dot = float(q[h, t] @ k[g, s])
    value = dot * scale
    return [c.tr("worked.scores", cell=c.label(), h=h, g=g, t=t, s=s, dh=dh),
            f"= ({dot_terms(q[h, t], k[g, s])}) × {num(scale)}", f"= {num(dot)} × {num(scale)} = {num(value)}"], value


def _op_mask(c: Cell) -> tuple[list[str], float]:
    t, s = c.index
    rows, cols = c.trace[c.name].shape
    position = cols - rows + t
    value = float(c.trace[c.name][t, s])
    key = "worked.mask_open" if s <= position else "worked.mask_closed"
    return [c.tr(key, cell=c.label(), s=s, p=position, v=num(value))], value


def _op_add(c: Cell) -> tuple[list[str], float]:
    a, b = c.rec(0), c.rec(1)
    va = float(a[c.index[-a.ndim:]])
    vb = float(b[c.index[-b.ndim:]])
    value = va + vb
    names = [n.split(".")[-1] for n in c.inputs[:2]]
    return [f"{c.label()} = {names[0]} + {names[1]} = {num(va)} + {num(vb, True)} = {num(value)}"], value


def _op_softmax(c: Cell) -> tuple[list[str], float]:
    *lead, j = c.index
    x = c.rec(0)[tuple(lead)]
    m = float(np.max(x))
    e = np.exp(x - m)
    total = float(np.sum(e))
    value = float(e[j] / total)
    return [c.tr("worked.softmax_max", m=num(m)),
            c.tr("worked.softmax_sum") + f" = {fold([num(v) for v in e])} = {num(total)}",
            f"{c.label()} = e^({num(x[j])} − {num(m, True)}) / {num(total)} = {num(e[j])} / {num(total)} = {num(value)}"
            ], value


def _op_context(c: Cell) -> tuple[list[str], float]:
    h, t, j = c.index
    p, v = c.rec(0), c.rec(1)
    g = h // (p.shape[0] // v.shape[0])
    value = float(p[h, t] @ v[g, :, j])
    return [c.tr("worked.context", cell=c.label(), h=h, g=g, t=t, j=j),
            f"= {dot_terms(p[h, t], v[g, :, j])} = {num(value)}"], value


def _op_swiglu(c: Cell) -> tuple[list[str], float]:
    g, u = float(c.rec(0)[c.index]), float(c.rec(1)[c.index])
    sig = 1.0 / (1.0 + math.exp(-g))
    value = g * sig * u
    return [f"σ(g) = 1 / (1 + e^−{num(g, True)}) = {num(sig)}",
            f"{c.label()} = silu(g)·u = g·σ(g)·u = {num(g, True)}·{num(sig)}·{num(u, True)} = {num(value)}"], value


def _op_relu(c: Cell) -> tuple[list[str], float]:
    u = float(c.rec(0)[c.index])
    value = max(u, 0.0)
    return [f"{c.label()} = max({num(u)}, 0) = {num(value)}"], value


def _op_top_k(c: Cell) -> tuple[list[str], float]:
    t, j = c.index
    probs = c.rec(0)[t]
    order = np.argsort(-probs, kind="stable")
    ranked = fold([f"E{e}: {num(probs[e])}" for e in order], ", ")
    return [c.tr("worked.topk", t=t, ranked=ranked), c.tr("worked.topk_pick", cell=c.label(), j=j + 1, e=int(order[j]))
            ], float(order[j])


def _op_topk_weights(c: Cell) -> tuple[list[str], float]:
    t, j = c.index
    logits = c.rec(0)[t]
    ids = np.asarray(c.trace[c.inputs[1]])[t]
    chosen = logits[ids]
    m = float(np.max(chosen))
    e = np.exp(chosen - m)
    value = float(e[j] / e.sum())
    return [c.tr("worked.topk_logits", ids=", ".join(f"E{i}" for i in ids), logits=", ".join(num(v) for v in chosen)),
            f"{c.label()} = e^({num(chosen[j])} − {num(m, True)}) / ({' + '.join(num(v) for v in e)}) = {num(value)}",
            c.tr("worked.renorm_same")], value


def _op_topk_raw(c: Cell) -> tuple[list[str], float]:
    t, j = c.index
    ids = np.asarray(c.trace[c.inputs[1]])[t]
    value = float(c.rec(0)[t, ids[j]])
    return [f"{c.label()} = P[{t}, E{int(ids[j])}] = {num(value)}"], value


def _op_scatter_gates(c: Cell) -> tuple[list[str], float]:
    t, e = c.index
    ids = np.asarray(c.rec(0))[t]
    w = c.rec(1)[t]
    hit = np.flatnonzero(ids == e)
    value = float(w[hit[0]]) if hit.size else 0.0
    key = "worked.gate_hit" if hit.size else "worked.gate_miss"
    return [c.tr(key, cell=c.label(), e=e, t=t, j=int(hit[0]) + 1 if hit.size else 0, v=num(value))], value


def _op_route_rows(c: Cell) -> tuple[list[str], float]:
    (r,) = c.index
    rows = np.asarray(c.trace[c.name])
    e = c.name.split(".")[-2]
    return [c.tr("worked.route", e=e, rows=", ".join(str(int(x)) for x in rows), r=r, t=int(rows[r]))], float(rows[r])


def _op_expert_weighted(c: Cell) -> tuple[list[str], float]:
    t, d = c.index
    e = int(c.name.split(".")[-2])
    gates = c.rec(0)
    rows = np.asarray(c.trace[c.inputs[1]])
    y = c.rec(2)
    hit = np.flatnonzero(rows == t)
    if not hit.size:
        return [c.tr("worked.weighted_skip", cell=c.label(), t=t, e=e)], 0.0
    r = int(hit[0])
    value = float(gates[t, e] * y[r, d])
    return [f"{c.label()} = G[{t},{e}]·y[{r},{d}] = {num(gates[t, e])}·{num(y[r, d], True)} = {num(value)}"], value


def _op_sum_experts(c: Cell) -> tuple[list[str], float]:
    parts = [(n.split(".")[-2], float(np.asarray(c.trace[n])[c.index])) for n in c.inputs]
    value = float(sum(v for _, v in parts))
    return [f"{c.label()} = Σ_e Z_e{list(c.index)} = {fold([f'{num(v, True)} (E{e})' for e, v in parts])} = {num(value)}"
            ], value


def _op_last_row(c: Cell) -> tuple[list[str], float]:
    (v,) = c.index
    logits = c.rec(0)
    value = float(logits[-1, v])
    return [f"{c.label()} = logits[{logits.shape[0] - 1}, {v}] = {num(value)}"], value


def _op_suppress(c: Cell) -> tuple[list[str], float]:
    (v,) = c.index
    suppressed = v in (c.trace.meta.get("sampling") or {}).get("suppress", [])
    value = float(c.trace[c.name][v]) if suppressed else float(c.rec(0)[v])
    key = "worked.suppressed" if suppressed else "worked.kept"
    return [c.tr(key, cell=c.label(), v=v, value=num(value))], value


def _op_greedy(c: Cell) -> tuple[list[str], float]:
    (v,) = c.index
    logits = c.rec(0)
    best = int(np.argmax(logits))
    value = 1.0 if v == best else 0.0
    return [c.tr("worked.greedy", cell=c.label(), best=best, logit=num(float(logits[best])), value=num(value))], value


def _op_sampling(c: Cell) -> tuple[list[str], float]:
    (v,) = c.index
    s = c.trace.meta.get("sampling") or {}
    temperature, top_k, top_p = float(s.get("temperature") or 1.0), s.get("top_k"), s.get("top_p")
    logits = c.rec(0)
    scaled = logits / temperature
    m = float(scaled.max())
    e = np.exp(scaled - m)
    probs = e / e.sum()
    order = np.argsort(-probs, kind="stable")
    keep = np.ones(len(probs), dtype=bool)
    if top_k is not None and top_k < len(probs):
        keep[order[top_k:]] = False
    if top_p is not None:
        sorted_probs = np.where(keep[order], probs[order], 0.0)
        before = np.cumsum(sorted_probs) - sorted_probs
        keep[order[before >= top_p * sorted_probs.sum()]] = False
    kept_mass = float(probs[keep].sum())
    rank = int(np.flatnonzero(order == v)[0]) + 1
    value = float(probs[v] / kept_mass) if keep[v] else 0.0
    return [c.tr("worked.sample_softmax", v=v, l=num(float(logits[v])), t=f"{temperature:g}", p=num(float(probs[v])),
                 rank=rank),
            c.tr("worked.sample_keep", k=top_k or "—", p=top_p or "—", n=int(keep.sum()), mass=num(kept_mass),
                 kept=c.tr("worked.yes") if keep[v] else c.tr("worked.no")),
            f"{c.label()} = {num(float(probs[v]))} / {num(kept_mass)} = {num(value)}" if keep[v] else
            f"{c.label()} = 0"], value


def _op_choose(c: Cell) -> tuple[list[str], float]:
    probs = c.rec(0)
    chosen = int(c.trace[c.name])
    greedy = float((c.trace.meta.get("sampling") or {}).get("temperature") or 0) == 0
    key = "worked.choose_greedy" if greedy else "worked.choose_drawn"
    return [c.tr(key, id=chosen, p=num(float(probs[chosen])))], float(chosen)


def _op_input(c: Cell) -> tuple[list[str], float]:
    (t,) = c.index
    if c.name == "grpo.rewards":  # the other input of a training step: the group file's rewards
        reward = float(c.trace[c.name][t])
        return [c.tr("worked.reward", cell=c.label(), j=t, v=num(reward))], reward
    value = int(c.trace[c.name][t])
    from tracer.traces.show import step_tokens

    return [c.tr("worked.token", cell=c.label(), t=t, text=step_tokens(c.trace, c.name)[0][t], id=value)], float(value)


def _op_one_hot(c: Cell) -> tuple[list[str], float]:
    t, v = c.index
    ids = np.asarray(c.trace[c.inputs[0]])
    value = 1.0 if ids[t] == v else 0.0
    return [f"{c.label()} = [{v} = ids[{t}] = {int(ids[t])}] = {num(value)}"], value


def _op_embedding(c: Cell) -> tuple[list[str], float]:
    t, d = c.index
    ids = np.asarray(c.trace[c.inputs[0]])
    row = c.param(1, int(ids[t]))
    value = float(row[d])
    return [c.tr("worked.embedding", cell=c.label(), t=t, id=int(ids[t]), w=c.inputs[1], d=d, v=num(value))], value


def _step_start(c: Cell) -> int:
    """The position of a record's first query: 0 for the prompt, prompt length + s − 1 at decode step s."""
    step = int(c.name.split(".")[1]) if c.name.startswith("decode.") else 0
    return 0 if step == 0 else len(c.trace.meta["token_ids"]) + step - 1


def _rope_frequencies(c: Cell) -> tuple[np.ndarray, float]:
    """ω and the factor a of this forward step, as the model sets them (RoPE scaling included)."""
    from tracer.engine.longctx import rope_frequencies

    prefix = c.name[:c.name.index("rope.")]
    return rope_frequencies(c.cfg, _step_start(c) + len(c.trace[f"{prefix}tokens"]))


def _op_rope_inv_freq(c: Cell) -> tuple[list[str], float]:
    (j,) = c.index
    dh = c.cfg.head_dim
    if c.cfg.rope_degrees_per_position is not None or c.cfg.rope_scaling is None:
        inv, _ = _rope_frequencies(c)
        value = float(inv[j])
        if c.cfg.rope_degrees_per_position is not None:
            degrees = c.cfg.rope_degrees_per_position[j]
            return [f"{c.label()} = {num(degrees)}° = {num(value)} rad"], value
        return [f"{c.label()} = θ^(−2·{j}/{dh}) = {c.cfg.rope_theta:g}^(−{num(2 * j / dh)}) = {num(value)}"], value
    inv, _ = _rope_frequencies(c)
    value = float(inv[j])
    base = c.cfg.rope_theta ** (-2 * j / dh)
    return [f"θ^(−2·{j}/{dh}) = {num(base)}", c.tr("worked.rope_scaled", cell=c.label(), v=num(value))], value


def _op_rope_attention_factor(c: Cell) -> tuple[list[str], float]:
    _, factor = _rope_frequencies(c)
    return [c.tr("worked.rope_factor", cell=c.label(), v=num(float(factor)))], float(factor)


def _op_rope_table(c: Cell) -> tuple[list[str], float]:
    t, j = c.index
    position = _step_start(c) + t
    inv, factor = _rope_frequencies(c)
    pair = j % len(inv)
    angle = position * inv[pair]
    fn = "cos" if c.name.endswith("cos") else "sin"
    value = factor * (math.cos(angle) if fn == "cos" else math.sin(angle))
    scaled = "" if factor == 1 else f"{num(factor)} · "
    return [c.tr("worked.rope_angle", p=position, j=pair, w=num(float(inv[pair])), a=num(float(angle))),
            f"{c.label()} = {scaled}{fn}({num(float(angle))}) = {num(value)}"], value


def _op_sliding_mask(c: Cell) -> tuple[list[str], float]:
    from tracer.engine.longctx import layer_window

    t, s = c.index
    rows, cols = c.trace[c.name].shape
    position = cols - rows + t
    window = layer_window(c.cfg, int(c.name.split("layers.")[1].split(".")[0]))
    value = float(c.trace[c.name][t, s])
    key = "worked.window_open" if position - window < s <= position else "worked.window_closed"
    return [c.tr(key, cell=c.label(), s=s, p=position, w=window, v=num(value))], value


def _op_kv_append(c: Cell) -> tuple[list[str], float]:
    """The cache after this step: the last positions kept from before (all of them, or the sliding window's
    last W − 1), then this step's new keys or values."""
    g, s, j = c.index
    past, new = c.rec(0), c.rec(1)
    held = c.trace[c.name].shape[1] - new.shape[1]
    if s < held:
        value = float(past[g, past.shape[1] - held + s, j])
        return [c.tr("worked.cache_past", cell=c.label(), s=s, v=num(value))], value
    value = float(new[g, s - held, j])
    return [c.tr("worked.cache_new", cell=c.label(), s=s, v=num(value))], value


TEXT_WORKERS: dict[str, Worker] = {
    "linear": _op_linear, "router": _op_linear, "linear_heads": _op_linear_heads, "linear_merge": _op_linear_merge,
    "expert_linear": _op_expert_linear, "rms_norm": _op_rms_norm, "l2_norm": _op_l2_norm, "apply_rope": _op_apply_rope,
    "attention_scores": _op_scores, "causal_mask": _op_mask, "add": _op_add, "softmax": _op_softmax,
    "attention_context": _op_context, "swiglu": _op_swiglu, "relu": _op_relu, "top_k": _op_top_k,
    "top_k_weights": _op_topk_weights, "top_k_weights_raw": _op_topk_raw, "scatter_gates": _op_scatter_gates,
    "route_rows": _op_route_rows, "expert_weighted": _op_expert_weighted, "sum_experts": _op_sum_experts,
    "last_row": _op_last_row, "suppress": _op_suppress, "greedy_probs": _op_greedy, "sampling_probs": _op_sampling,
    "choose": _op_choose, "input": _op_input, "one_hot": _op_one_hot, "embedding": _op_embedding,
    "rope_cos": _op_rope_table, "rope_sin": _op_rope_table, "kv_append": _op_kv_append,
    "rope_inv_freq": _op_rope_inv_freq, "rope_attention_factor": _op_rope_attention_factor,
    "sliding_window_mask": _op_sliding_mask,
}
WORKERS: dict[str, Worker] = {**TEXT_WORKERS, **VISION_WORKERS, **TRAIN_WORKERS, **INTERP_WORKERS}
"""The worker of every op kind a trace can hold (its record's ``op``)."""


def work_cell(trace: Trace, name: str, index: tuple[int, ...], params: Params | None = None,
              lang: str = "en") -> Worked:
    """The derivation of one cell of record ``name`` with its numbers, and the value it gives."""
    tr = translator(lang)
    value = np.asarray(trace[name])
    index = tuple(int(i) for i in index)
    if len(index) != value.ndim or any(not 0 <= i < n for i, n in zip(index, value.shape)):
        raise TracerError.of("worked.bad_index", index=list(index), shape=list(value.shape))
    cell = Cell(trace, name, index, params or Params(trace.meta), tr)
    worker = WORKERS.get(cell.info["op"])
    if worker is None:
        raise TracerError.of("worked.no_worker", op=cell.info["op"])
    lines, result = worker(cell)
    return Worked(cell.label(), lines, float(result), float(value[index]), cell.used)


def parameters(trace: Trace, name: str, params: Params | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """The checkpoint tensors a record is computed from, with their stored shapes ([out, in])."""
    p = params or Params(trace.meta)
    return [(n, p.shape(n)) for n in trace.info[name]["inputs"] if n in p.shapes]
