"""The real Hugging Face ``transformers`` Qwen3 / Qwen3-MoE, traced into the same schema as the NumPy engine.

Nothing of ``transformers`` is edited or copied. Tensors come from:
- module forward hooks and pre-hooks (embedding, rotary tables, norms, projections, router, MLP pieces,
  residuals, block outputs, final norm, logits);
- an attention function registered with ``AttentionInterface`` (and the library's ``eager_mask`` registered
  under the same name with ``AttentionMaskInterface``, without which the function would get no causal mask):
  post-RoPE q/k, the KV cache, scores, mask, probabilities and context, computed with eager's own ops;
- a hook on the experts module, which recomputes each chosen expert's gate/up/act/down from the library's
  own stacked weights and checks that their gate-weighted sum equals the library's output.
Records recomputed from captured tensors (router softmax, dense gates, one-hot rows, per-expert pieces) are
marked ``derived`` in ``__meta__``. Sampling uses the tracer's sampler on the library's logits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial, reduce
from typing import Any

import numpy as np

from tracer import Message, TracerError
from tracer.backends.torch_interp import check_patchable, interp
from tracer.engine.interventions import Interventions
from tracer.engine.model import Generation, Sampling, decode_loop
from tracer.engine.recorder import Recorder
from tracer.sources.config import Qwen3Config

ATTENTION_NAME = "qwen3_tracer"
TORCH_DTYPES = ("float32", "float64", "bfloat16", "float16")


def require_torch() -> tuple[Any, Any]:
    """torch and transformers, or a one-line install hint."""
    try:
        import torch
        import transformers
    except ImportError:
        raise TracerError.of("errors.needs_torch") from None
    return torch, transformers


def check_device(device: str | None) -> str:
    """The torch device a run may use: ``None`` -> cuda when available, else cpu; cpu, cuda, cuda:N and auto
    as given (cuda only where torch sees a GPU, N below their count); mps only where torch has it."""
    torch, _ = require_torch()
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    mps = torch.backends.mps.is_available()
    kind, colon, index = device.partition(":")
    if kind == "cuda" and (not colon or index.isdigit()):
        if not torch.cuda.is_available():
            raise TracerError.of("backends.err_no_cuda", device=device)
        count = torch.cuda.device_count()
        if colon and int(index) >= count:
            raise TracerError.of("backends.err_cuda_index", device=device, count=count, last=count - 1)
        return device
    if device in ("cpu", "auto") or (device == "mps" and mps):
        return device
    raise TracerError.of("backends.err_device", device=device, mps=Message("errors.or_mps") if mps else "")


def unsupported(cfg: Qwen3Config) -> Message | None:
    """Why transformers' Qwen3 cannot express this config (a catalog message; ``str()`` is English), or None
    when it can."""
    reasons = []
    if not cfg.final_norm:
        reasons.append(Message("errors.torch_final_norm"))
    if cfg.mask_value is not None:
        reasons.append(Message("errors.torch_mask_value", value=cfg.mask_value))
    if cfg.is_moe and cfg.expert_act != "swiglu":
        reasons.append(Message("errors.torch_relu_experts"))
    if cfg.router_bias:
        reasons.append(Message("errors.torch_router_bias"))
    return reduce(lambda first, then: Message("errors.joined", first=first, then=then), reasons) if reasons else None


def hf_config(cfg: Qwen3Config) -> Any:
    """The transformers config object for this model."""
    _, transformers = require_torch()
    d = {k: v for k, v in cfg.to_hf_dict().items() if k not in ("architectures", "model_type", "qk_norm",
                                                                  "rope_degrees_per_position")}
    d["rope_parameters"] = {**(d.pop("rope_scaling", None) or {"rope_type": "default"}), "rope_theta": d.pop("rope_theta")}
    if cfg.is_moe:
        hf = transformers.Qwen3MoeConfig(**d)
        hf.head_dim = cfg.head_dim
    else:
        hf = transformers.Qwen3Config(**d)
    return hf


def state_dict(cfg: Qwen3Config, weights: Any, torch: Any) -> dict[str, Any]:
    """Checkpoint tensors in the layout transformers v5 keeps in memory (experts stacked as 3-D weights)."""
    sd = {}
    with warnings.catch_warnings():  # memory-mapped weights are read-only; the model only reads them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name in weights:
            if ".mlp.experts." not in name:
                sd[name] = torch.from_numpy(np.ascontiguousarray(weights[name]))
    if cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    for i in range(cfg.num_hidden_layers):
        if cfg.is_sparse_layer(i):
            p = f"model.layers.{i}.mlp.experts"
            gate_up = np.stack([np.concatenate([weights[f"{p}.{e}.gate_proj.weight"], weights[f"{p}.{e}.up_proj.weight"]])
                                for e in range(cfg.num_experts)])
            down = np.stack([weights[f"{p}.{e}.down_proj.weight"] for e in range(cfg.num_experts)])
            sd[f"{p}.gate_up_proj"] = torch.from_numpy(gate_up)
            sd[f"{p}.down_proj"] = torch.from_numpy(down)
    return sd


@contextmanager
def quiet_library() -> Iterator[None]:
    """transformers' warnings and progress bars off while a model loads; the caller's settings restored after."""
    import logging

    _, transformers = require_torch()
    log = transformers.utils.logging
    verbosity, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    accelerate_log = logging.getLogger("accelerate")  # "offloaded to disk": the trace meta says where layers ran
    accelerate_level = accelerate_log.level
    log.set_verbosity_error()
    log.disable_progress_bar()
    accelerate_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.set_verbosity(verbosity)
        if bars:
            log.enable_progress_bar()
        accelerate_log.setLevel(accelerate_level)


def build_model(cfg: Qwen3Config, weights: Any, directory: Any, dtype: str, device: str, traced: bool = True,
                offload_dir: str | None = None, max_memory: dict[Any, Any] | None = None) -> Any:
    """A real Qwen3ForCausalLM / Qwen3MoeForCausalLM with these weights: traced attention and eager experts,
    or (``traced=False``, for benchmarks) the library's defaults.

    ``device="auto"`` spreads the layers over every visible GPU, then CPU memory, then ``offload_dir`` on disk
    (accelerate's ``device_map="auto"``; ``max_memory`` caps each, e.g. ``{"cpu": "2GiB"}``).
    """
    torch, transformers = require_torch()
    register_attention()
    torch_dtype = getattr(torch, dtype)
    cls = transformers.Qwen3MoeForCausalLM if cfg.is_moe else transformers.Qwen3ForCausalLM
    placed = {"device_map": "auto", "offload_folder": offload_dir, "max_memory": max_memory} if device == "auto" else {}
    with quiet_library():
        if directory is not None:
            model = cls.from_pretrained(str(directory), local_files_only=True, dtype=torch_dtype, **placed)
        else:
            with torch.device("meta"):
                model = cls(hf_config(cfg))
            model.load_state_dict(state_dict(cfg, weights, torch), strict=True, assign=True)
            model.model.rotary_emb = type(model.model.rotary_emb)(config=model.config)
            if cfg.tie_word_embeddings:
                model.tie_weights()
            model = model.to(torch_dtype)
            apply_teaching_variants(model, cfg, torch)
            if device == "auto":
                model = dispatch(model, offload_dir, max_memory)
        if traced:
            model.set_attn_implementation(ATTENTION_NAME)
            if cfg.is_moe:
                model.set_experts_implementation("eager")
    if directory is not None:
        apply_teaching_variants(model, cfg, torch)
    return (model if device == "auto" else model.to(device)).eval()


def dispatch(model: Any, offload_dir: str | None, max_memory: dict[Any, Any] | None) -> Any:
    """Place a model built in memory over GPUs, CPU and disk, keeping each decoder layer whole."""
    try:
        from accelerate import dispatch_model, infer_auto_device_map
    except ImportError:
        raise TracerError.of("errors.needs_accelerate") from None
    layer_class = type(model.model.layers[0]).__name__
    device_map = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=[layer_class])
    if set(device_map) == {""}:
        if device_map[""] == "disk":
            raise TracerError.of("errors.auto_no_fit")
        return model.to(device_map[""])  # it fits on one device
    return dispatch_model(model, device_map=device_map, offload_dir=offload_dir, main_device=torch_device_of(device_map))


def torch_device_of(device_map: dict[str, Any]) -> str:
    """The device the first layers run on: the first GPU or CPU in the map (disk-offloaded layers run there)."""
    devices = [d for d in device_map.values() if d not in ("disk", "cpu")]
    return f"cuda:{devices[0]}" if devices and isinstance(devices[0], int) else str(devices[0]) if devices else "cpu"


def placement(model: Any) -> dict[str, str]:
    """Where each part of a model placed by ``--device auto`` lives (module name -> cuda:N, cpu or disk)."""
    device_map = getattr(model, "hf_device_map", None) or {"": next(model.parameters()).device}  # all on one
    return {name: (f"cuda:{d}" if isinstance(d, int) else str(d)) for name, d in device_map.items()}


def input_device(model: Any, device: str) -> str:
    """Where the input ids go: the embedding's device (``--device auto``: accelerate moves them on)."""
    if device != "auto":
        return device
    weight = model.get_input_embeddings().weight
    return "cpu" if weight.device.type == "meta" else str(weight.device)


def apply_teaching_variants(model: Any, cfg: Qwen3Config, torch: Any) -> None:
    """Express the variants the library can: L2 QK-Norm and explicit RoPE angles.

    L2 normalisation is RMSNorm with weight 1/√Dh (x/‖x‖ = x/(√Dh · rms(x))), exact up to ε; explicit angles
    replace the rotary module's ``inv_freq`` buffer.
    """
    with torch.no_grad():
        if cfg.qk_norm == "l2":
            for layer in model.model.layers:
                layer.self_attn.q_norm.weight.mul_(1 / math.sqrt(cfg.head_dim))
                layer.self_attn.k_norm.weight.mul_(1 / math.sqrt(cfg.head_dim))
        if cfg.rope_degrees_per_position is not None:
            radians = torch.tensor([math.radians(d) for d in cfg.rope_degrees_per_position], dtype=torch.float32)
            model.model.rotary_emb.inv_freq = radians
            model.model.rotary_emb.original_inv_freq = radians.clone()


def register_attention() -> None:
    """Register the tracing attention function and, under the same name, the library's eager mask."""
    import transformers
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    transformers.AttentionInterface.register(ATTENTION_NAME, _traced_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def _traced_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
                      dropout: float = 0.0, **kwargs: Any) -> tuple[Any, Any]:
    """Eager attention (same ops as ``eager_attention_forward``) with every intermediate recorded.

    The run's session arrives as the keyword ``tracer_session``, which transformers passes from the model call
    down to the attention function; without one (the model used outside a trace) nothing is recorded.
    """
    import torch

    s: _Session = kwargs.get("tracer_session") or _Session.silent()
    n = f"layers.{module.layer_idx}.attn"
    t = query.shape[2]
    s.rec(f"{n}.q_rope", s.np(query[0]), s.full(f"{n}.q_norm"), s.full("rope.cos"), s.full("rope.sin"))
    s.rec(f"{n}.k_rope", s.np(key[0, :, -t:]), s.full(f"{n}.k_norm"), s.full("rope.cos"), s.full("rope.sin"))
    decoding = key.shape[2] > t  # the library's cache holds earlier positions besides this step's
    if decoding:
        s.rec(f"{n}.k_cache", s.np(key[0]), s.full(f"{n}.k_rope"))
        s.rec(f"{n}.v_cache", s.np(value[0]), s.full(f"{n}.v_proj"))
    keys_in = s.full(f"{n}.k_cache") if decoding else s.full(f"{n}.k_rope")
    groups = module.num_key_value_groups
    key_states = key.repeat_interleave(groups, dim=1)
    value_states = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    s.rec(f"{n}.scores", s.np(scores[0]), s.full(f"{n}.q_rope"), keys_in)
    s.rec(f"{n}.mask", s.np(attention_mask[0, 0]))
    masked = scores + attention_mask
    s.rec(f"{n}.masked_scores", s.np(masked[0]), s.full(f"{n}.scores"), s.full(f"{n}.mask"))
    probs = torch.nn.functional.softmax(masked, dim=-1, dtype=torch.float32).to(query.dtype)
    s.rec(f"{n}.probs", s.np(probs[0]), s.full(f"{n}.masked_scores"))
    context = torch.matmul(probs, value_states)
    values_in = s.full(f"{n}.v_cache") if decoding else s.full(f"{n}.v_proj")
    s.rec(f"{n}.context", s.np(context[0]), s.full(f"{n}.probs"), values_in)
    return context.transpose(1, 2).contiguous(), probs


class _Session:
    """The recorder of the forward pass in progress and the hooks that feed it."""

    def __init__(self, cfg: Qwen3Config, model: Any, rec: Recorder, torch: Any):
        self.cfg = cfg
        self.model = model
        self.rec = rec
        self.torch = torch
        self.handles: list[Any] = []
        self.ids: Any = None
        self.logits: np.ndarray | None = None
        self.weighted_names: list[str] = []

    @classmethod
    def silent(cls) -> _Session:
        """A session that records nothing (for the traced attention called outside a trace)."""
        torch, _ = require_torch()
        return cls(None, None, Recorder(capture=[]), torch)  # type: ignore[arg-type]

    def forward(self, tokens: list[int], rec: Recorder, cache: Any, device: str) -> np.ndarray:
        """One forward pass of the model on ``tokens`` (continuing ``cache`` when given), recorded into ``rec``;
        returns the logits [T, V]."""
        self.rec = rec
        self.ids = np.array(tokens, dtype=np.int64)
        ids = self.torch.tensor([tokens], dtype=self.torch.long, device=device)
        self.model(input_ids=ids, past_key_values=cache, use_cache=cache is not None, tracer_session=self)
        assert self.logits is not None
        return self.logits

    def np(self, tensor: Any) -> np.ndarray:
        """A tensor as a NumPy array (half precision widened to float32, which is exact)."""
        t = tensor.detach()
        if t.dtype in (self.torch.bfloat16, self.torch.float16):
            t = t.float()
        return t.cpu().numpy()

    def full(self, name: str) -> str:
        """A record name as the recorder stores it (under ``decode.{s}.`` in a decode step)."""
        return self.rec.prefix + name

    def hook(self, module: Any, fn: Any, pre: bool = False) -> None:
        """Call ``fn`` with a module's input (pre) or output; the hook returns None, leaving the model as is."""

        def pre_hook(_module: Any, args: tuple[Any, ...]) -> None:
            fn(args[0])

        def post_hook(_module: Any, _args: tuple[Any, ...], out: Any) -> None:
            fn(out)

        self.handles.append(module.register_forward_pre_hook(pre_hook) if pre else
                            module.register_forward_hook(post_hook))

    def install(self) -> None:
        cfg, m = self.cfg, self.model.model
        heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_key_value_heads)

        def first(x: Any) -> Any:
            return x[0] if isinstance(x, tuple) else x

        def on_embed(out: Any) -> None:
            ids = self.rec("tokens", self.ids)
            if cfg.vocab_size <= 4096:
                onehot = (ids[:, None] == np.arange(cfg.vocab_size)[None, :]).astype(self.np(out).dtype)
                self.rec("embed.onehot", onehot, self.full("tokens"), derived=True)
            self.rec("embed.out", self.np(out[0]), self.full("tokens"), "model.embed_tokens.weight")

        def on_rotary(out: Any) -> None:
            # the rotary module's table as this forward used it (dynamic NTK updates it before computing cos/sin)
            self.rec("rope.inv_freq", self.np(m.rotary_emb.inv_freq.to(out[0].dtype)))
            self.rec("rope.attention_factor", np.array(m.rotary_emb.attention_scaling, dtype=self.np(out[0]).dtype))
            self.rec("rope.cos", self.np(out[0][0]), self.full("tokens"), self.full("rope.inv_freq"),
                     self.full("rope.attention_factor"))
            self.rec("rope.sin", self.np(out[1][0]), self.full("tokens"), self.full("rope.inv_freq"),
                     self.full("rope.attention_factor"))

        self.hook(m.embed_tokens, on_embed)
        self.hook(m.rotary_emb, on_rotary)
        for i, layer in enumerate(m.layers):
            self.install_layer(i, layer, heads, first)
        self.hook(m.norm, lambda out: self.rec("final_norm", self.np(out[0]),
                                               self.full(f"layers.{cfg.num_hidden_layers - 1}.resid_post"),
                                               "model.norm.weight"))
        head = "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"

        def on_logits(out: Any) -> None:
            self.logits = self.rec("logits", self.np(out[0]), self.full("final_norm"), head)

        self.hook(self.model.lm_head, on_logits)

    def install_layer(self, i: int, layer: Any, heads: tuple[int, int, int], first: Any) -> None:
        cfg, n, p = self.cfg, f"layers.{i}", f"model.layers.{i}"
        block_in = "embed.out" if i == 0 else f"layers.{i - 1}.resid_post"
        att = layer.self_attn
        self.hook(layer.input_layernorm, lambda out: self.rec(
            f"{n}.attn_norm", self.np(out[0]), self.full(block_in), f"{p}.input_layernorm.weight"))
        for proj, count in zip(("q_proj", "k_proj", "v_proj"), heads):
            self.hook(getattr(att, proj), lambda out, proj=proj, count=count: self.rec(
                f"{n}.attn.{proj}", self.np(out[0].reshape(out.shape[1], count, cfg.head_dim).transpose(0, 1)),
                self.full(f"{n}.attn_norm"), f"{p}.self_attn.{proj}.weight"))
        for norm, proj in (("q_norm", "q_proj"), ("k_norm", "k_proj")):
            self.hook(getattr(att, norm), lambda out, norm=norm, proj=proj: self.rec(
                f"{n}.attn.{norm}", self.np(out[0].transpose(0, 1)), self.full(f"{n}.attn.{proj}"),
                f"{p}.self_attn.{norm}.weight", op="l2_norm" if cfg.qk_norm == "l2" else None))
        self.hook(att.o_proj, lambda out: self.rec(f"{n}.attn.o_proj", self.np(out[0]), self.full(f"{n}.attn.context"),
                                                   f"{p}.self_attn.o_proj.weight"))
        self.hook(layer.post_attention_layernorm, lambda x: self.rec(
            f"{n}.resid_mid", self.np(x[0]), self.full(block_in), self.full(f"{n}.attn.o_proj")), pre=True)
        self.hook(layer.post_attention_layernorm, lambda out: self.rec(
            f"{n}.mlp_norm", self.np(out[0]), self.full(f"{n}.resid_mid"), f"{p}.post_attention_layernorm.weight"))
        mlp = layer.mlp
        if cfg.is_sparse_layer(i):
            self.hook(mlp.gate, lambda out: self.on_router(n, p, out))
            self.handles.append(mlp.experts.register_forward_hook(partial(self.on_experts, n, p)))
            self.hook(mlp, lambda out: self.rec(f"{n}.moe.out", self.np(out[0]),
                                                *[self.full(x) for x in self.weighted_names]))
            mlp_out = f"{n}.moe.out"
        else:
            for proj in ("gate_proj", "up_proj"):
                self.hook(getattr(mlp, proj), lambda out, proj=proj: self.rec(
                    f"{n}.mlp.{proj}", self.np(out[0]), self.full(f"{n}.mlp_norm"), f"{p}.mlp.{proj}.weight"))
            self.hook(mlp.down_proj, lambda x: self.rec(
                f"{n}.mlp.act", self.np(x[0]), self.full(f"{n}.mlp.gate_proj"), self.full(f"{n}.mlp.up_proj")), pre=True)
            self.hook(mlp.down_proj, lambda out: self.rec(
                f"{n}.mlp.down_proj", self.np(out[0]), self.full(f"{n}.mlp.act"), f"{p}.mlp.down_proj.weight"))
            mlp_out = f"{n}.mlp.down_proj"
        self.hook(layer, lambda out: self.rec(f"{n}.resid_post", self.np(first(out)[0]), self.full(f"{n}.resid_mid"),
                                              self.full(mlp_out)))

    def on_router(self, n: str, p: str, out: Any) -> None:
        torch = self.torch
        logits, weights, ids = out
        m = f"{n}.moe"
        self.rec(f"{m}.router_logits", self.np(logits), self.full(f"{n}.mlp_norm"), f"{p}.mlp.gate.weight")
        probs = torch.nn.functional.softmax(logits, dim=-1, dtype=torch.float)
        self.rec(f"{m}.router_probs", self.np(probs.to(logits.dtype)), self.full(f"{m}.router_logits"), derived=True)
        self.rec(f"{m}.topk_ids", ids.cpu().numpy().astype(np.int64), self.full(f"{m}.router_probs"))
        op = None if self.cfg.norm_topk_prob else "top_k_weights_raw"
        self.rec(f"{m}.topk_weights", self.np(weights), self.full(f"{m}.router_probs"), self.full(f"{m}.topk_ids"), op=op)
        gates = torch.zeros_like(logits).scatter(1, ids, weights)
        self.rec(f"{m}.gates", self.np(gates), self.full(f"{m}.topk_ids"), self.full(f"{m}.topk_weights"), derived=True)

    def on_experts(self, n: str, p: str, module: Any, args: tuple[Any, ...], out: Any) -> None:
        """Each chosen expert's MLP recomputed from the library's stacked weights, checked against its output."""
        torch = self.torch
        hidden, ids, weights = args
        if any(p.device.type == "meta" for p in module.parameters()):  # offloaded to disk: load for the recompute
            from accelerate.utils import align_module_device

            with align_module_device(module, hidden.device):
                return self.on_experts(n, p, module, args, out)
        m = f"{n}.moe"
        total = torch.zeros_like(hidden)
        self.weighted_names = []
        for e in range(self.cfg.num_experts):
            rows = torch.nonzero((ids == e).any(dim=1)).flatten()
            if rows.numel() == 0:
                continue
            ne, pe = f"{m}.experts.{e}", f"{p}.mlp.experts.{e}"
            slot = (ids[rows] == e).float().argmax(dim=1)
            self.rec(f"{ne}.token_ids", rows.cpu().numpy().astype(np.int64), self.full(f"{m}.topk_ids"), derived=True)
            x = hidden[rows]
            gate, up = torch.nn.functional.linear(x, module.gate_up_proj[e]).chunk(2, dim=-1)
            self.rec(f"{ne}.gate_proj", self.np(gate), self.full(f"{n}.mlp_norm"), f"{pe}.gate_proj.weight", derived=True)
            self.rec(f"{ne}.up_proj", self.np(up), self.full(f"{n}.mlp_norm"), f"{pe}.up_proj.weight", derived=True)
            act = module.act_fn(gate) * up
            self.rec(f"{ne}.act", self.np(act), self.full(f"{ne}.gate_proj"), self.full(f"{ne}.up_proj"), derived=True)
            down = torch.nn.functional.linear(act, module.down_proj[e])
            self.rec(f"{ne}.down_proj", self.np(down), self.full(f"{ne}.act"), f"{pe}.down_proj.weight", derived=True)
            weighted = torch.zeros_like(hidden)
            weighted[rows] = down * weights[rows, slot, None]
            self.rec(f"{ne}.weighted", self.np(weighted), self.full(f"{m}.gates"), self.full(f"{ne}.down_proj"),
                     derived=True)
            self.weighted_names.append(f"{ne}.weighted")
            total = total + weighted
        tol = 1e-4 if hidden.dtype in (torch.float32, torch.float64) else 5e-2
        scale = float(out.abs().max()) or 1.0
        if float((total - out).abs().max()) > tol * scale:
            raise AssertionError(f"{m}: per-expert recomputation differs from the library's experts output")

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@contextmanager
def tracing(cfg: Qwen3Config, model: Any, rec: Recorder, torch: Any) -> Iterator[_Session]:
    session = _Session(cfg, model, rec, torch)
    session.install()
    try:
        yield session
    finally:
        session.remove()


def generate_torch(cfg: Qwen3Config, model: Any, prompt: list[int], rec: Recorder, sampling: Sampling,
                   max_new_tokens: int, stop_tokens: tuple[int, ...], device: str,
                   interventions: Interventions | None = None) -> Generation:
    """Prefill, then decode with the library's own DynamicCache, recording the same names as the engine."""
    torch, transformers = require_torch()
    check_patchable(interventions)
    cache = transformers.DynamicCache(config=model.config)
    where = input_device(model, device)
    with tracing(cfg, model, rec, torch) as session, interp(cfg, model, session, interventions), torch.no_grad():
        return decode_loop(cfg, prompt, rec, sampling, max_new_tokens, stop_tokens,
                           lambda tokens, step_rec: session.forward(tokens, step_rec, cache, where))


def library_versions() -> dict[str, str]:
    torch, transformers = require_torch()
    return {"torch": torch.__version__, "transformers": transformers.__version__}
