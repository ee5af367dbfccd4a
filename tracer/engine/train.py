"""One traced training step of the NumPy engine: loss, the backward pass walked record by record, an optimizer.

The forward pass is the inference forward (``model.forward``) with every record captured; nothing in it changes.
``backward`` then walks the same records in reverse, block by block in the order ``forward`` wrote them, and
applies the backward op (``backward_ops``) of each forward op. The gradient of record ``x`` is ``grad.x`` and the
gradient of checkpoint tensor ``W`` is ``grad.param.W`` (a weight used twice, like a tied embedding, sums both).

Objectives (see docs/trace-schema.md, "Training"):
- next-token cross-entropy, Hugging Face ``labels=`` convention (shift inside, −100 ignored, token mean);
- SFT: only assistant tokens counted, as TRL's ``assistant_only_loss`` with its Qwen3 training template;
- MoE load-balancing loss (Hugging Face ``load_balancing_loss_func``) × ``router_aux_loss_coef``;
- DPO (sigmoid loss, frozen reference = the starting weights) and GRPO (group-normalised advantages).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracer import TracerError
from tracer.engine import backward_ops as bw
from tracer.engine import ops
from tracer.engine.model import forward
from tracer.engine.recorder import Recorder
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import lm_head_name

ROUTER_AUX_LOSS_COEF = 0.001
"""transformers' Qwen3MoeConfig default (the loss is added only with ``output_router_logits``)."""
ADAMW_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
"""torch.optim.AdamW defaults."""
DEFAULT_UPDATE_PARAMS = "model.layers.0.self_attn.q_proj.weight"
GRPO_STD_EPS = 1e-4
"""TRL's A = (r − mean) / (std + 1e-4)."""

# Why a position has label −100 (or is counted); shown per token on the Training page.
COUNTED, LAST, NOT_ASSISTANT = "counted", "last", "not_assistant"


@dataclass
class Targets:
    """What the loss scores: ``labels[t]`` is the token the logits at t must predict, or −100."""

    labels: np.ndarray
    reasons: list[str]

    @classmethod
    def next_token(cls, ids: np.ndarray, counted: np.ndarray, masked_reason: str = NOT_ASSISTANT) -> Targets:
        labels = bw.shift_labels(np.asarray(ids), np.asarray(counted, dtype=bool))
        reasons = [COUNTED if label != bw.IGNORE_INDEX else masked_reason for label in labels]
        reasons[-1] = LAST
        return cls(labels, reasons)


@dataclass
class Optimizer:
    """SGD or AdamW (``torch.optim`` semantics) over every parameter, with its state between steps."""

    kind: str
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = ADAMW_DEFAULTS["betas"]  # type: ignore[assignment]
    eps: float = ADAMW_DEFAULTS["eps"]  # type: ignore[assignment]
    step_count: int = 0
    m: dict[str, np.ndarray] = field(default_factory=dict)
    v: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("sgd", "adamw"):
            raise TracerError.of("train.err_optimizer", kind=repr(self.kind))
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise TracerError.of("train.err_lr", lr=self.lr)
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise TracerError.of("train.err_weight_decay", wd=self.weight_decay)

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update ``params`` in place.

        SGD: p ← p − lr·(g + wd·p). AdamW (torch): p ← p·(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
        p ← p − (lr / (1 − β1ᵗ)) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + ε).
        """
        self.step_count += 1
        b1, b2 = self.betas
        for name, g in grads.items():
            p = params[name]
            if self.kind == "sgd":
                p -= self.lr * (g + self.weight_decay * p if self.weight_decay else g)
                continue
            p *= 1 - self.lr * self.weight_decay
            m = self.m.setdefault(name, np.zeros_like(p))
            v = self.v.setdefault(name, np.zeros_like(p))
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            bc1 = 1 - b1 ** self.step_count
            bc2_sqrt = math.sqrt(1 - b2 ** self.step_count)
            p -= (self.lr / bc1) * m / (np.sqrt(v) / bc2_sqrt + self.eps)


# ---------------------------------------------------------------------------------------------------
# The backward pass, walking the forward's records in reverse
# ---------------------------------------------------------------------------------------------------


class Backward:
    """Gradients of every forward record and every parameter, from dL/dlogits (and dL/drouter_probs for the
    load-balancing loss), by the backward op of each forward op."""

    def __init__(self, cfg: Qwen3Config, weights: Mapping[str, np.ndarray], records: Mapping[str, np.ndarray]):
        self.cfg, self.w, self.r = cfg, weights, records
        self.grads: dict[str, np.ndarray] = {}
        self.params: dict[str, np.ndarray] = {}

    def _param(self, name: str, grad: np.ndarray) -> None:
        self.params[name] = self.params[name] + grad if name in self.params else grad

    def run(self, dlogits: np.ndarray, drouter_probs: Mapping[int, np.ndarray] | None = None) -> None:
        cfg, r, g = self.cfg, self.r, self.grads
        last = f"layers.{cfg.num_hidden_layers - 1}.resid_post"
        g["logits"] = dlogits
        head = lm_head_name(cfg)
        head_in = r["final_norm"] if cfg.final_norm else r[last]
        d_stream, d_head = bw.linear_backward(head_in, self.w[head], dlogits)
        self._param(head, d_head)
        if cfg.final_norm:
            g["final_norm"] = d_stream
            d_stream, d_norm = bw.rms_norm_backward(r[last], self.w["model.norm.weight"], cfg.rms_norm_eps, d_stream)
            self._param("model.norm.weight", d_norm)
        for i in reversed(range(cfg.num_hidden_layers)):
            n = f"layers.{i}"
            g[f"{n}.resid_post"] = d_stream
            d_mid_direct, d_mlp_out = bw.add_backward(d_stream)
            if cfg.is_sparse_layer(i):
                d_mid = d_mid_direct + self.moe(i, d_mlp_out, (drouter_probs or {}).get(i))
            else:
                d_mid = d_mid_direct + self.mlp(i, d_mlp_out)
            g[f"{n}.resid_mid"] = d_mid
            d_in_direct, d_attn_out = bw.add_backward(d_mid)
            d_stream = d_in_direct + self.attention(i, d_attn_out)
        g["embed.out"] = d_stream
        ids = r["tokens"]
        self._param("model.embed_tokens.weight", bw.embedding_backward(ids, d_stream, cfg.vocab_size))

    def _norm(self, x_name: str, out_name: str, weight: str, dy: np.ndarray, l2: bool = False) -> np.ndarray:
        self.grads[out_name] = dy
        fn = bw.l2_norm_backward if l2 else bw.rms_norm_backward
        dx, dw = fn(self.r[x_name], self.w[weight], self.cfg.rms_norm_eps, dy)
        self._param(weight, dw)
        return dx

    def attention(self, i: int, d_out: np.ndarray) -> np.ndarray:
        """dL/d(attention output) [T, D] -> dL/d(block input) through o_proj, context, softmax, scores, RoPE,
        QK-Norm, Q/K/V and the pre-norm."""
        cfg, r, g = self.cfg, self.r, self.grads
        p, n = f"model.layers.{i}", f"layers.{i}.attn"
        g[f"{n}.o_proj"] = d_out
        wo = f"{p}.self_attn.o_proj.weight"
        d_merged, d_wo = bw.linear_backward(ops.merge_heads(r[f"{n}.context"]), self.w[wo], d_out)
        self._param(wo, d_wo)
        d_ctx = g[f"{n}.context"] = bw.merge_heads_backward(d_merged, cfg.num_attention_heads)
        d_probs, d_v = bw.attention_context_backward(r[f"{n}.probs"], r[f"{n}.v_proj"], d_ctx)
        g[f"{n}.probs"] = d_probs
        d_masked = g[f"{n}.masked_scores"] = bw.softmax_backward(r[f"{n}.probs"], d_probs)
        d_scores, _ = bw.add_backward(d_masked)  # the mask is a constant
        g[f"{n}.scores"] = d_scores
        d_qr, d_kr = bw.attention_scores_backward(r[f"{n}.q_rope"], r[f"{n}.k_rope"], cfg.head_dim ** -0.5, d_scores)
        g[f"{n}.q_rope"], g[f"{n}.k_rope"] = d_qr, d_kr
        cos, sin = r["rope.cos"], r["rope.sin"]
        l2 = cfg.qk_norm == "l2"
        d_q = self._norm(f"{n}.q_proj", f"{n}.q_norm", f"{p}.self_attn.q_norm.weight",
                         bw.apply_rope_backward(d_qr, cos, sin), l2)
        d_k = self._norm(f"{n}.k_proj", f"{n}.k_norm", f"{p}.self_attn.k_norm.weight",
                         bw.apply_rope_backward(d_kr, cos, sin), l2)
        h = r[f"layers.{i}.attn_norm"]
        d_h = np.zeros_like(h)
        for proj, d in (("q_proj", d_q), ("k_proj", d_k), ("v_proj", d_v)):
            g[f"{n}.{proj}"] = d
            wname = f"{p}.self_attn.{proj}.weight"
            dx, dw = bw.linear_backward(h, self.w[wname], bw.split_heads_backward(d))
            self._param(wname, dw)
            d_h += dx
        block_in = "embed.out" if i == 0 else f"layers.{i - 1}.resid_post"
        return self._norm(block_in, f"layers.{i}.attn_norm", f"{p}.input_layernorm.weight", d_h)

    def mlp(self, i: int, d_out: np.ndarray) -> np.ndarray:
        """dL/d(MLP output) -> dL/d(resid_mid) through down, SwiGLU, gate/up and the pre-norm."""
        r, g = self.r, self.grads
        p, n = f"model.layers.{i}.mlp", f"layers.{i}.mlp"
        g[f"{n}.down_proj"] = d_out
        d_act, d_wd = bw.linear_backward(r[f"{n}.act"], self.w[f"{p}.down_proj.weight"], d_out)
        self._param(f"{p}.down_proj.weight", d_wd)
        g[f"{n}.act"] = d_act
        d_gate, d_up = bw.swiglu_backward(r[f"{n}.gate_proj"], r[f"{n}.up_proj"], d_act)
        h = r[f"layers.{i}.mlp_norm"]
        d_h = np.zeros_like(h)
        for proj, d in (("gate_proj", d_gate), ("up_proj", d_up)):
            g[f"{n}.{proj}"] = d
            dx, dw = bw.linear_backward(h, self.w[f"{p}.{proj}.weight"], d)
            self._param(f"{p}.{proj}.weight", dw)
            d_h += dx
        return self._norm(f"layers.{i}.resid_mid", f"layers.{i}.mlp_norm",
                          f"model.layers.{i}.post_attention_layernorm.weight", d_h)

    def moe(self, i: int, d_out: np.ndarray, d_probs_aux: np.ndarray | None) -> np.ndarray:
        """dL/d(MoE output) -> dL/d(resid_mid) through each expert, the gates, top-k weights and the router."""
        cfg, r, g = self.cfg, self.r, self.grads
        p, n = f"model.layers.{i}.mlp", f"layers.{i}.moe"
        h = r[f"layers.{i}.mlp_norm"]
        g[f"{n}.out"] = d_out
        d_h = np.zeros_like(h)
        d_gates = np.zeros_like(r[f"{n}.gates"])
        for e in range(cfg.num_experts):
            ne, pe = f"{n}.experts.{e}", f"{p}.experts.{e}"
            if f"{ne}.token_ids" not in r:
                continue
            rows = r[f"{ne}.token_ids"]
            g[f"{ne}.weighted"] = d_out  # a sum passes its gradient to every term
            d_y, d_gate_col = bw.scatter_rows_backward(rows, r[f"{ne}.down_proj"], r[f"{n}.gates"][rows, e], d_out)
            d_gates[rows, e] += d_gate_col
            g[f"{ne}.down_proj"] = d_y
            d_act, d_wd = bw.linear_backward(r[f"{ne}.act"], self.w[f"{pe}.down_proj.weight"], d_y)
            self._param(f"{pe}.down_proj.weight", d_wd)
            g[f"{ne}.act"] = d_act
            x_e = h[rows]
            if cfg.expert_act == "swiglu":
                d_gate, d_up = bw.swiglu_backward(r[f"{ne}.gate_proj"], r[f"{ne}.up_proj"], d_act)
                pairs = (("gate_proj", d_gate), ("up_proj", d_up))
            else:
                pairs = (("up_proj", bw.relu_backward(r[f"{ne}.up_proj"], d_act)),)
            for proj, d in pairs:
                g[f"{ne}.{proj}"] = d
                dx, dw = bw.linear_backward(x_e, self.w[f"{pe}.{proj}.weight"], d)
                self._param(f"{pe}.{proj}.weight", dw)
                d_h += bw.gather_rows_backward(rows, dx, len(h))
        g[f"{n}.gates"] = d_gates
        ids = r[f"{n}.topk_ids"]
        d_w = g[f"{n}.topk_weights"] = bw.scatter_gates_backward(ids, d_gates)
        probs = r[f"{n}.router_probs"]
        if cfg.norm_topk_prob:  # w = p[ids] / Σ p[ids] (the same values as softmax of the chosen logits)
            d_w = bw.renormalize_backward(np.take_along_axis(probs, ids, axis=-1), d_w)
        d_probs = bw.top_k_backward(ids, d_w, cfg.num_experts)
        if d_probs_aux is not None:
            d_probs = d_probs + d_probs_aux
        g[f"{n}.router_probs"] = d_probs
        d_logits = g[f"{n}.router_logits"] = bw.softmax_backward(probs, d_probs)
        dx, dw = bw.linear_backward(h, self.w[f"{p}.gate.weight"], d_logits)
        self._param(f"{p}.gate.weight", dw)
        if cfg.router_bias:
            self._param(f"{p}.gate.bias", np.sum(d_logits, axis=0))
        d_h += dx
        return self._norm(f"layers.{i}.resid_mid", f"layers.{i}.mlp_norm",
                          f"model.layers.{i}.post_attention_layernorm.weight", d_h)


# ---------------------------------------------------------------------------------------------------
# Objectives
# ---------------------------------------------------------------------------------------------------


@dataclass
class Loss:
    """A loss value, dL/dlogits of each sequence, dL/drouter_probs per sparse layer, and records to keep."""

    value: float
    records: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def sparse_layers(cfg: Qwen3Config) -> list[int]:
    return [i for i in range(cfg.num_hidden_layers) if cfg.is_sparse_layer(i)]


def lm_loss(cfg: Qwen3Config, records: Mapping[str, np.ndarray], targets: Targets, aux_coef: float
            ) -> tuple[Loss, np.ndarray, dict[int, np.ndarray]]:
    """Cross-entropy (+ coef × load-balancing loss for MoE) of one forward -> loss, dlogits, dprobs per layer."""
    labels = targets.labels
    if not np.any(labels != bw.IGNORE_INDEX):
        raise TracerError.of("train.err_all_masked")
    logits = records["logits"]
    token_loss = bw.token_cross_entropy(logits, labels)
    n = int(np.sum(labels != bw.IGNORE_INDEX))
    ce = float(np.sum(token_loss, dtype=np.float64) / n)
    out = Loss(ce, {"train.labels": labels, "train.token_loss": token_loss})
    dlogits = bw.cross_entropy_backward(logits, labels, 1.0)
    d_probs: dict[int, np.ndarray] = {}
    layers = sparse_layers(cfg)
    if layers:
        probs = [records[f"layers.{i}.moe.router_probs"] for i in layers]
        ids = [records[f"layers.{i}.moe.topk_ids"] for i in layers]
        aux, f, p_mean = bw.load_balancing_loss(probs, ids, cfg.num_experts)
        dtype = logits.dtype
        out.records.update({"train.aux_f": f.astype(dtype), "train.aux_p": p_mean.astype(dtype),
                            "train.aux_loss": np.array(aux, dtype=dtype)})
        out.meta.update({"ce_loss": ce, "aux_loss": aux, "router_aux_loss_coef": aux_coef})
        out.value = ce + aux_coef * aux
        row = bw.load_balancing_backward(f, sum(len(x) for x in probs), aux_coef).astype(dtype)
        d_probs = {i: np.broadcast_to(row, records[f"layers.{i}.moe.router_probs"].shape) for i in layers}
    out.records["train.loss"] = np.array(out.value, dtype=logits.dtype)
    return out, dlogits, d_probs


def run_forward(cfg: Qwen3Config, weights: Mapping[str, np.ndarray], ids: np.ndarray) -> Recorder:
    """The inference forward with every record captured (the numbers are the inference numbers); the logit lens
    and direct logit attribution (``lens.*``, ``attrib.*``) explain a prediction and take no part in training."""
    rec = Recorder()
    forward(cfg, weights, np.asarray(ids, dtype=np.int64), rec)
    for name in [n for n in rec.records if n.startswith(("lens.", "attrib."))]:
        del rec.records[name], rec.inputs[name]
    return rec


def backward(cfg: Qwen3Config, weights: Mapping[str, np.ndarray], records: Mapping[str, np.ndarray],
             dlogits: np.ndarray, d_probs: Mapping[int, np.ndarray] | None = None) -> Backward:
    b = Backward(cfg, weights, records)
    b.run(dlogits, d_probs)
    return b


def param_grads(weights: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every checkpoint tensor's gradient, zeros for those the step did not reach (experts nobody chose)."""
    return {name: grads[name] if name in grads else np.zeros_like(weights[name]) for name in weights}


def select_params(names: list[str], pattern: str) -> list[str]:
    chosen = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not chosen:
        raise TracerError.of("train.err_update_params", pattern=repr(pattern), example=DEFAULT_UPDATE_PARAMS)
    return chosen


# ---------------------------------------------------------------------------------------------------
# Preference objectives
# ---------------------------------------------------------------------------------------------------


def answer_logprobs(cfg: Qwen3Config, weights: Mapping[str, np.ndarray], ids: np.ndarray, start: int
                    ) -> tuple[Recorder, np.ndarray, np.ndarray]:
    """Forward of prompt + answer -> (records, labels, per-token log-prob of each answer token at its position).

    labels[t] = ids[t+1] for the answer tokens (t+1 ≥ start), else −100; token_logp[t] = log p(labels[t]) or 0.
    """
    rec = run_forward(cfg, weights, ids)
    counted = np.arange(len(ids)) >= start
    labels = bw.shift_labels(np.asarray(ids), counted)
    token_logp = -bw.token_cross_entropy(rec.records["logits"], labels)
    return rec, labels, token_logp


def dpo_loss(beta: float, policy: tuple[float, float], reference: tuple[float, float]) -> tuple[float, float, float, float]:
    """Sigmoid DPO on one pair: (loss, dL/dlogπ(chosen), reward_chosen, reward_rejected).

    r = β·(log π − log π_ref); loss = −log σ(r_c − r_r); dL/dlogπ(c) = −β·σ(−(r_c − r_r)) = −dL/dlogπ(r).

    >>> [round(x, 4) for x in dpo_loss(0.1, (-3.0, -5.0), (-3.0, -5.0))]
    [0.6931, -0.05, 0.0, 0.0]
    """
    rc = beta * (policy[0] - reference[0])
    rr = beta * (policy[1] - reference[1])
    margin = rc - rr
    loss = float(np.logaddexp(0.0, -margin))  # −log σ(m), stable
    d_chosen = -beta / (1.0 + math.exp(margin))
    return loss, d_chosen, rc, rr


def grpo_advantages(rewards: np.ndarray) -> np.ndarray:
    """A_i = (r_i − mean r) / (std r + 1e-4), std with n − 1 (TRL ``scale_rewards="group"``).

    >>> grpo_advantages(np.array([1.0, 0.0, 0.0, 1.0])).round(6)
    array([ 0.865875, -0.865875, -0.865875,  0.865875])
    """
    return (rewards - rewards.mean()) / (rewards.std(ddof=1) + GRPO_STD_EPS)
