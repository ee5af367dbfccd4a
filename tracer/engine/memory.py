"""Memory arithmetic of a long context: weights, KV cache, the largest activation and the attention scores.

Every figure is bytes = (number of values) × (bytes per value of the dtype), for a prefill of ``context`` tokens
in a batch of ``batch`` sequences (``tracer info MODEL --context N [--dtype D] [--batch B] [--json]``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from tracer import TracerError
from tracer.engine.longctx import context_limit, layer_window
from tracer.i18n import pad, t
from tracer.sources.config import Qwen3Config
from tracer.sources.info import count_params

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}
STAT_BYTES = 4
"""Flash-style attention keeps, per query row and head, a float32 running max and sum (the log-sum-exp)."""


@dataclass(frozen=True)
class Memory:
    """Bytes of one model at one context length (batch ``batch``, values of ``dtype``)."""

    context: int
    batch: int
    dtype: str
    bytes_per_value: int
    parameters: int
    weights: int
    kv_tokens_per_layer: list[int]
    """Positions each layer's cache holds: the context, or W − 1 in a sliding layer (transformers keeps W − 1)."""
    kv_per_layer: list[int]
    kv_total: int
    kv_per_token: int
    """K and V of one token in every layer, batch 1 (before a sliding window caps a layer)."""
    largest_activation: str
    largest_activation_shape: list[int]
    largest_activation_bytes: int
    scores_materialised: int
    """One layer's [B, H, T, T] score matrix, as eager attention builds it (its softmax is another of the same)."""
    scores_flash: int
    """Flash-style attention never builds it: it keeps [B, H, T] float32 log-sum-exp statistics instead."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kv_cache_bytes(cfg: Qwen3Config, tokens: int, batch: int = 1, bytes_per_value: int = 2) -> list[int]:
    """Bytes of each layer's cache: 2 (K and V) · B · Hkv · Dh · tokens held · bytes.

    >>> from tracer.sources.presets import QWEN3_0_6B
    >>> sum(kv_cache_bytes(QWEN3_0_6B, 32768)) / 2**30
    3.5
    """
    return [2 * batch * cfg.num_key_value_heads * cfg.head_dim * _held(cfg, i, tokens) * bytes_per_value
            for i in range(cfg.num_hidden_layers)]


def _held(cfg: Qwen3Config, i: int, tokens: int) -> int:
    window = layer_window(cfg, i)
    return tokens if window is None or window == 1 else min(tokens, window - 1)  # W = 1: HF's [-0:] keeps all


def vision_params(vision: Any) -> int:
    """Parameters of a Qwen3-VL vision tower (patch embedding, blocks, mergers); 0 for a text model (None)."""
    if vision is None:
        return 0
    from tracer.vision.forward import vision_weight_shapes

    return sum(_prod(list(s)) for s in vision_weight_shapes(vision).values())


def memory(cfg: Qwen3Config, context: int, dtype: str = "bfloat16", batch: int = 1, vision: Any = None) -> Memory:
    """Every figure of ``tracer info --context``; ``vision`` (a VisionConfig) adds the vision tower's weights."""
    if dtype not in DTYPE_BYTES:
        raise TracerError.of("longctx.err_dtype", value=dtype, choices=", ".join(DTYPE_BYTES))
    if context < 1:
        raise TracerError.of("longctx.err_context", value=context)
    if batch < 1:
        raise TracerError.of("longctx.err_batch", value=batch)
    size = DTYPE_BYTES[dtype]
    params = count_params(cfg).total + vision_params(vision)
    per_layer = kv_cache_bytes(cfg, context, batch, size)
    b, s = batch, context
    candidates = [
        ("embed.out", [b, s, cfg.hidden_size]),
        ("layers.{i}.attn.q_proj", [b, s, cfg.num_attention_heads * cfg.head_dim]),
        ("logits", [b, s, cfg.vocab_size]),
    ]
    if any(not cfg.is_sparse_layer(i) for i in range(cfg.num_hidden_layers)):
        candidates.append(("layers.{i}.mlp.gate_proj", [b, s, cfg.intermediate_size]))
    if cfg.is_moe:
        candidates.append(("layers.{i}.moe.router_logits", [b, s, cfg.num_experts]))
        candidates.append(("layers.{i}.moe.experts.{e}.gate_proj (all k)", [b, s * cfg.num_experts_per_tok,
                                                                            cfg.moe_intermediate_size]))
    name, shape = max(candidates, key=lambda c: _prod(c[1]))
    return Memory(
        context=context, batch=batch, dtype=dtype, bytes_per_value=size, parameters=params, weights=params * size,
        kv_tokens_per_layer=[_held(cfg, i, context) for i in range(cfg.num_hidden_layers)],
        kv_per_layer=per_layer, kv_total=sum(per_layer),
        kv_per_token=2 * cfg.num_key_value_heads * cfg.head_dim * size * cfg.num_hidden_layers,
        largest_activation=name, largest_activation_shape=shape, largest_activation_bytes=_prod(shape) * size,
        scores_materialised=b * cfg.num_attention_heads * s * s * size,
        scores_flash=b * cfg.num_attention_heads * s * STAT_BYTES,
    )


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def human(n: int) -> str:
    """Bytes in binary units.

    >>> human(3 * 2**30), human(1536)
    ('3.00 GiB', '1.50 KiB')
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.2f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    raise AssertionError("unreachable")


def memory_report(cfg: Qwen3Config, name: str, m: Memory, lang: str = "en") -> str:
    """The figures as text (``tracer info --context``)."""
    def line(key: str, value: int, **fmt: Any) -> str:
        return f"  {pad(t('longctx.' + key, lang, **fmt), 50)} {value:>24,} B  {human(value):>11}"

    full = [i for i, held in enumerate(m.kv_tokens_per_layer) if held == m.context]
    lines = [t("longctx.mem_title", lang, model=name, context=f"{m.context:,}", batch=m.batch, dtype=m.dtype,
               size=m.bytes_per_value),
             line("mem_weights", m.weights, params=f"{m.parameters:,}"),
             line("mem_kv_total", m.kv_total),
             line("mem_kv_token", m.kv_per_token, kv=cfg.num_key_value_heads, dh=cfg.head_dim,
                  layers=cfg.num_hidden_layers)]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (held, b) in enumerate(zip(m.kv_tokens_per_layer, m.kv_per_layer)):
        groups.setdefault((held, b), []).append(i)
    for (held, b), layers in groups.items():
        lines.append(line("mem_kv_layer", b, layers=_span(layers), tokens=f"{held:,}"))
    lines.append(line("mem_activation", m.largest_activation_bytes, name=m.largest_activation,
                      shape="×".join(str(d) for d in m.largest_activation_shape)))
    lines.append(line("mem_scores", m.scores_materialised, b=m.batch, h=cfg.num_attention_heads, t=m.context))
    lines.append(line("mem_flash", m.scores_flash, b=m.batch, h=cfg.num_attention_heads, t=m.context))
    lines.append(line("mem_total", m.weights + m.kv_total + m.largest_activation_bytes))
    if m.context > context_limit(cfg):
        lines.append(t("longctx.mem_beyond_note", lang, limit=f"{context_limit(cfg):,}"))
    if len(full) < cfg.num_hidden_layers:
        lines.append(t("longctx.mem_sliding_note", lang, count=cfg.num_hidden_layers - len(full)))
    return "\n".join(lines)


def _span(layers: list[int]) -> str:
    return str(layers[0]) if len(layers) == 1 else f"{layers[0]}-{layers[-1]}" if layers == list(
        range(layers[0], layers[-1] + 1)) else ",".join(map(str, layers))


def memory_command(cfg: Qwen3Config, name: str, context: int | None, dtype: str | None, batch: int | None,
                   as_json: bool, vision: Any = None, lang: str = "en") -> str:
    """What ``tracer info MODEL --context N [--dtype D] [--batch B] [--json]`` prints (the report in ``lang``; the
    JSON the same in every language)."""
    if context is None:
        flag = "--json" if as_json else "--dtype" if dtype is not None else "--batch"
        raise TracerError.of("longctx.err_needs_context", flag=flag)
    m = memory(cfg, context, dtype or "bfloat16", 1 if batch is None else batch, vision)
    if as_json:
        return json.dumps(dict(m.as_dict(), model=name), indent=2)
    return memory_report(cfg, name, m, lang)
