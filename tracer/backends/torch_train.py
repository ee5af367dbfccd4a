"""A training step of the real transformers Qwen3 / Qwen3-MoE, with every gradient from torch autograd.

The model is built by ``torch_backend.build_model``. Tensor hooks (``Tensor.register_hook``) on the module
outputs, on the tensors of an eager attention function registered under its own name, and on the router and
expert tensors give ``grad.<record>``; ``Parameter.grad`` gives ``grad.param.<checkpoint name>`` (stacked experts
split back into per-expert matrices). The attention function reaches this run's store through the keyword
arguments transformers passes down from ``model(...)`` (no module-global state).

Router and experts: the router's softmax and top-k weights, and each chosen expert's MLP, are recomputed with
the library's own parameters inside forward hooks that RETURN the recomputation, so autograd runs through tensors
the hooks can see (values equal the library's; those records are marked ``derived``). The load-balancing loss
enters through those router probabilities; its value is checked against transformers' ``load_balancing_loss_func``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tracer import TracerError
from tracer.backends import torch_backend as tb
from tracer.engine.recorder import Recorder
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import lm_head_name

ATTENTION_NAME = "qwen3_tracer_train"


class _Store:
    """One run's forward values (as recorded) and the gradients their tensor hooks receive."""

    def __init__(self, torch: Any):
        self.torch = torch
        self.rec = Recorder()
        self.grads: dict[str, np.ndarray] = {}
        self.tensors: dict[str, Any] = {}

    def np(self, t: Any) -> np.ndarray:
        return t.detach().float().cpu().numpy() if t.dtype in (self.torch.bfloat16, self.torch.float16) else \
            t.detach().cpu().numpy()

    def keep(self, name: str, tensor: Any, layout: Callable[[Any], Any] = lambda x: x, derived: bool = False) -> None:
        """Record ``layout(tensor)`` now, and ``layout(grad)`` as ``grad.<name>`` when autograd reaches it."""
        self.rec(name, self.np(layout(tensor)), derived=derived)
        if tensor.requires_grad:
            self.tensors[name] = tensor

            def on_grad(g: Any) -> None:
                self.grads[name] = self.np(layout(g))

            tensor.register_hook(on_grad)

    def value(self, name: str, array: np.ndarray, derived: bool = False) -> None:
        self.rec(name, array, derived=derived)


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
               dropout: float = 0.0, tracer_store: _Store | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """Eager attention (``eager_attention_forward``'s ops) keeping q/k after RoPE, scores, probs and context."""
    import torch

    s = tracer_store
    if s is None:
        raise RuntimeError("the training attention function runs only inside tracer's train step")
    n = f"layers.{module.layer_idx}.attn"
    s.keep(f"{n}.q_rope", query, lambda x: x[0])
    s.keep(f"{n}.k_rope", key, lambda x: x[0])
    groups = module.num_key_value_groups
    scores = torch.matmul(query, key.repeat_interleave(groups, dim=1).transpose(2, 3)) * scaling
    s.keep(f"{n}.scores", scores, lambda x: x[0])
    s.value(f"{n}.mask", s.np(attention_mask[0, 0]))
    masked = scores + attention_mask
    s.keep(f"{n}.masked_scores", masked, lambda x: x[0])
    probs = torch.nn.functional.softmax(masked, dim=-1, dtype=torch.float32).to(query.dtype)
    s.keep(f"{n}.probs", probs, lambda x: x[0])
    context = torch.matmul(probs, value.repeat_interleave(groups, dim=1))
    s.keep(f"{n}.context", context, lambda x: x[0])
    return context.transpose(1, 2).contiguous(), probs


def register_attention() -> None:
    import transformers
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    transformers.AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def build(cfg: Qwen3Config, weights: Any, directory: Any, dtype: str = "float32", device: str = "cpu") -> Any:
    """The transformers model of ``torch_backend.build_model`` with this module's attention function."""
    model = tb.build_model(cfg, weights, directory, dtype, device)
    register_attention()
    model.set_attn_implementation(ATTENTION_NAME)
    return model


def _install(cfg: Qwen3Config, model: Any, s: _Store, ids: np.ndarray, torch: Any) -> tuple[list[Any], list[Any]]:
    """Forward hooks recording every named tensor; returns the handles and the per-sparse-layer router probs."""
    handles: list[Any] = []
    router_probs: list[Any] = []
    m = model.model
    t = len(ids)

    def post(module: Any, fn: Callable[[Any], Any]) -> None:
        def hook(_m: Any, _a: Any, out: Any) -> None:  # returns None: the output stays the library's
            fn(out)

        handles.append(module.register_forward_hook(hook))

    def pre(module: Any, fn: Callable[[Any], None]) -> None:
        def hook(_m: Any, args: Any) -> None:
            fn(args[0])

        handles.append(module.register_forward_pre_hook(hook))

    def first(out: Any) -> Any:
        return out[0] if isinstance(out, tuple) else out

    def on_embed(out: Any) -> None:
        s.value("tokens", ids)
        if cfg.vocab_size <= 4096:  # as the engine: one-hot rows for small vocabularies (a constant, no gradient)
            s.value("embed.onehot", (ids[:, None] == np.arange(cfg.vocab_size)).astype(s.np(out).dtype), derived=True)
        s.keep("embed.out", out, lambda x: x[0])

    post(m.embed_tokens, on_embed)
    def on_rotary(out: Any) -> None:  # the table this forward used (dynamic NTK updates it first), as the engine
        dtype = s.np(out[0]).dtype
        s.value("rope.inv_freq", s.np(m.rotary_emb.inv_freq.to(out[0].dtype)))
        s.value("rope.attention_factor", np.array(m.rotary_emb.attention_scaling, dtype=dtype))
        s.value("rope.cos", s.np(out[0][0]))
        s.value("rope.sin", s.np(out[1][0]))

    post(m.rotary_emb, on_rotary)
    for i, layer in enumerate(m.layers):
        n = f"layers.{i}"
        att = layer.self_attn
        post(layer.input_layernorm, lambda out, n=n: s.keep(f"{n}.attn_norm", out, lambda x: x[0]))
        for proj, count in (("q_proj", cfg.num_attention_heads), ("k_proj", cfg.num_key_value_heads),
                            ("v_proj", cfg.num_key_value_heads)):
            post(getattr(att, proj), lambda out, n=n, proj=proj, count=count: s.keep(
                f"{n}.attn.{proj}", out, lambda x: x[0].reshape(t, count, cfg.head_dim).transpose(0, 1)))
        for norm in ("q_norm", "k_norm"):
            post(getattr(att, norm), lambda out, n=n, norm=norm: s.keep(f"{n}.attn.{norm}", out,
                                                                       lambda x: x[0].transpose(0, 1)))
        post(att.o_proj, lambda out, n=n: s.keep(f"{n}.attn.o_proj", out, lambda x: x[0]))
        pre(layer.post_attention_layernorm, lambda x, n=n: s.keep(f"{n}.resid_mid", x, lambda y: y[0]))
        post(layer.post_attention_layernorm, lambda out, n=n: s.keep(f"{n}.mlp_norm", out, lambda x: x[0]))
        mlp = layer.mlp
        if cfg.is_sparse_layer(i):
            handles.append(mlp.gate.register_forward_hook(
                lambda _m, _a, out, n=n: _on_router(cfg, s, n, out, router_probs, torch)))
            handles.append(mlp.experts.register_forward_hook(
                lambda mod, args, out, n=n: _on_experts(cfg, s, n, mod, args, torch)))
            post(mlp, lambda out, n=n: s.keep(f"{n}.moe.out", out, lambda x: x[0]))
        else:
            for proj in ("gate_proj", "up_proj"):
                post(getattr(mlp, proj), lambda out, n=n, proj=proj: s.keep(f"{n}.mlp.{proj}", out, lambda x: x[0]))
            pre(mlp.down_proj, lambda x, n=n: s.keep(f"{n}.mlp.act", x, lambda y: y[0]))
            post(mlp.down_proj, lambda out, n=n: s.keep(f"{n}.mlp.down_proj", out, lambda x: x[0]))
        post(layer, lambda out, n=n: s.keep(f"{n}.resid_post", first(out), lambda x: x[0]))
    post(m.norm, lambda out: s.keep("final_norm", out, lambda x: x[0]))
    post(model.lm_head, lambda out: s.keep("logits", out, lambda x: x[0]))
    return handles, router_probs


def _on_router(cfg: Qwen3Config, s: _Store, n: str, out: Any, router_probs: list[Any], torch: Any) -> Any:
    """The router's softmax and top-k weights recomputed from its logits (the library's formula), returned in
    place of its output so that autograd runs through them."""
    logits, _, ids = out
    m = f"{n}.moe"
    s.keep(f"{m}.router_logits", logits)
    probs = torch.nn.functional.softmax(logits, dtype=torch.float, dim=-1)
    s.keep(f"{m}.router_probs", probs, derived=True)
    router_probs.append(probs)
    s.value(f"{m}.topk_ids", ids.cpu().numpy().astype(np.int64))
    top = probs.gather(1, ids)
    if cfg.norm_topk_prob:
        top = top / top.sum(dim=-1, keepdim=True)
    top = top.to(logits.dtype)
    s.keep(f"{m}.topk_weights", top, derived=True)
    return logits, top, ids


def _on_experts(cfg: Qwen3Config, s: _Store, n: str, module: Any, args: tuple[Any, ...], torch: Any) -> Any:
    """Each chosen expert on its rows from the library's stacked weights, weighted by its gate and summed; the
    sum replaces the experts' output (the same values) so that each piece has a gradient."""
    hidden, ids, weights = args
    m = f"{n}.moe"
    gates = torch.zeros(hidden.shape[0], cfg.num_experts, dtype=weights.dtype, device=hidden.device)
    gates = gates.scatter(1, ids, weights)
    s.keep(f"{m}.gates", gates, derived=True)
    total = torch.zeros_like(hidden)
    for e in range(cfg.num_experts):
        rows = torch.nonzero((ids == e).any(dim=1)).flatten()
        if rows.numel() == 0:
            continue
        ne = f"{m}.experts.{e}"
        s.value(f"{ne}.token_ids", rows.cpu().numpy().astype(np.int64), derived=True)
        gate, up = torch.nn.functional.linear(hidden[rows], module.gate_up_proj[e]).chunk(2, dim=-1)
        s.keep(f"{ne}.gate_proj", gate, derived=True)
        s.keep(f"{ne}.up_proj", up, derived=True)
        act = module.act_fn(gate) * up
        s.keep(f"{ne}.act", act, derived=True)
        down = torch.nn.functional.linear(act, module.down_proj[e])
        s.keep(f"{ne}.down_proj", down, derived=True)
        weighted = torch.zeros_like(hidden).index_add(0, rows, down * gates[rows, e, None])
        s.keep(f"{ne}.weighted", weighted, derived=True)
        total = total + weighted
    return total


def param_grads(cfg: Qwen3Config, model: Any) -> dict[str, np.ndarray]:
    """``Parameter.grad`` under checkpoint names: stacked experts split per expert; L2 QK-Norm's 1/√Dh undone."""
    out: dict[str, np.ndarray] = {}
    for name, p in model.named_parameters():
        g = np.zeros(tuple(p.shape), dtype=np.float32) if p.grad is None else p.grad.detach().float().cpu().numpy()
        if name.endswith("mlp.experts.gate_up_proj"):
            stem = name.removesuffix("gate_up_proj")
            half = g.shape[1] // 2
            for e in range(g.shape[0]):
                out[f"{stem}{e}.gate_proj.weight"] = g[e, :half]
                out[f"{stem}{e}.up_proj.weight"] = g[e, half:]
        elif name.endswith("mlp.experts.down_proj"):
            stem = name.removesuffix("down_proj")
            for e in range(g.shape[0]):
                out[f"{stem}{e}.down_proj.weight"] = g[e]
        else:
            if cfg.qk_norm == "l2" and name.endswith(("q_norm.weight", "k_norm.weight")):
                g = g / math.sqrt(cfg.head_dim)  # the library's weight is w/√Dh
            out[name] = g
    if cfg.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


def hf_labels(labels: np.ndarray) -> np.ndarray:
    """Our shifted labels (position t scores token t+1) -> transformers' unshifted ``labels=`` (it shifts inside)."""
    out = np.full(len(labels), -100, dtype=np.int64)
    out[1:] = labels[:-1]
    return out


def train_step_torch(cfg: Qwen3Config, model: Any, ids: list[int], labels: np.ndarray, aux_coef: float
                     ) -> tuple[Recorder, dict[str, float]]:
    """Forward with labels, backward -> (records: forward, ``train.*``, ``grad.*``, ``grad.param.*``; losses).

    losses: ``loss`` (what was differentiated: CE + coef·aux through the hooked router probabilities),
    ``transformers_loss`` (the library's own ``labels=`` loss, with ``output_router_logits`` for MoE), ``aux_loss``.
    """
    torch, _ = tb.require_torch()
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    if not np.any(labels != -100):
        raise TracerError.of("train.err_all_masked")
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    target = torch.tensor(hf_labels(labels)[None], dtype=torch.long, device=device)
    model.zero_grad(set_to_none=True)
    if cfg.is_moe:
        model.config.router_aux_loss_coef = aux_coef
    store = _Store(torch)
    arr = np.array(ids, dtype=np.int64)
    handles, router_probs = _install(cfg, model, store, arr, torch)
    try:
        with torch.enable_grad():
            out = model(input_ids=input_ids, labels=target, use_cache=False, tracer_store=store)
            loss = out.loss
            losses: dict[str, float] = {"ce_loss": float(loss.detach())}
            aux_parts: dict[str, np.ndarray] = {}
            if router_probs:
                k = cfg.num_experts_per_tok
                rows = sum(p.shape[0] for p in router_probs)
                counts = sum(torch.zeros(cfg.num_experts, dtype=torch.float32, device=device).scatter_add_(
                    0, torch.topk(p, k, dim=-1).indices.reshape(-1), torch.ones(p.shape[0] * k, device=device))
                    for p in router_probs)
                aux = cfg.num_experts * torch.sum(counts / rows * sum(p.sum(0) for p in router_probs) / rows)
                losses["aux_loss"] = float(aux.detach())
                logits_tuple = tuple(store.tensors[f"layers.{i}.moe.router_logits"].detach()
                                     for i in range(cfg.num_hidden_layers) if cfg.is_sparse_layer(i))
                losses["aux_loss_transformers"] = float(load_balancing_loss_func(logits_tuple, cfg.num_experts, k))
                aux_parts = {"train.aux_f": store.np(counts / rows),
                             "train.aux_p": store.np(sum(p.sum(0) for p in router_probs) / rows),
                             "train.aux_loss": store.np(aux)}
                loss = loss + aux_coef * aux
            losses["loss"] = float(loss.detach())
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        kwargs = {"output_router_logits": True} if cfg.is_moe else {}
        ref = model(input_ids=input_ids, labels=target, use_cache=False, tracer_store=_Store(torch), **kwargs)
        losses["transformers_loss"] = float(ref.loss)
    params = param_grads(cfg, model)
    if lm_head_name(cfg) not in params:
        raise AssertionError("no gradient for the LM head")
    rec = store.rec
    forward_names = list(rec.records)
    logits = store.tensors["logits"].detach()[0].float()
    token_loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels, device=device), ignore_index=-100,
                                                   reduction="none")
    dtype = rec.records["logits"].dtype
    rec("train.labels", labels, "tokens")
    rec("train.token_loss", store.np(token_loss).astype(dtype), "logits", "train.labels")
    for name, value in aux_parts.items():
        rec(name, value.astype(dtype))
    rec("train.loss", np.array(losses["loss"], dtype=dtype), "train.token_loss")
    for name in reversed(forward_names):
        if name in store.grads:
            rec(f"grad.{name}", store.grads[name], name, op="backward")
    for name, g in params.items():
        rec(f"grad.param.{name}", g, name)
    return rec, losses
