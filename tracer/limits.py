"""Limits every config must respect: finite numbers, and sizes this tool can hold, checked in O(1).

A config that would name millions of weight tensors or a dimension past 2³¹ is refused here, before any code
loops over its layers or experts (``--set num_hidden_layers=1000000000`` must not hang ``tracer info``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tracer import TracerError
from tracer.i18n import t

if TYPE_CHECKING:
    from tracer.config import Qwen3Config

MAX_DIM = 2**31 - 1
"""Largest value of any size field (vocabulary, widths, heads, layers, context)."""
MAX_TENSORS = 500_000
"""Most weight tensors a config may name (Qwen3-235B-A22B has about 37,000)."""
_SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
          "num_key_value_heads", "head_dim", "max_position_embeddings", "num_experts", "num_experts_per_tok",
          "moe_intermediate_size", "decoder_sparse_step")
_FLOATS = ("rope_theta", "rms_norm_eps", "initializer_range")


def tensor_count(cfg: Qwen3Config) -> int:
    """Weight tensors of a checkpoint of this config, in closed form (``weights.weight_shapes`` lists them).

    >>> from tracer.presets import QWEN3_0_6B
    >>> tensor_count(QWEN3_0_6B)
    311
    """
    n_sparse = cfg.sparse_layer_count()
    n_dense = cfg.num_hidden_layers - n_sparse
    per_expert = 3 if cfg.expert_act == "swiglu" else 2
    sparse = 1 + (1 if cfg.router_bias else 0) + cfg.num_experts * per_expert
    return (1 + cfg.num_hidden_layers * 8 + n_dense * 3 + n_sparse * sparse + (1 if cfg.final_norm else 0)
            + (0 if cfg.tie_word_embeddings else 1))


def check_config_limits(cfg: Qwen3Config) -> None:
    """Finite, in-range numbers and a bounded number of tensors; a one-line TracerError otherwise."""
    for name in _FLOATS:
        value = getattr(cfg, name)
        if not math.isfinite(value):
            raise TracerError(t("safety.config_not_finite", "en", key=name, value=value))
    if cfg.initializer_range < 0:
        raise TracerError(t("safety.config_negative", "en", key="initializer_range", value=cfg.initializer_range))
    if cfg.mask_value is not None and (math.isnan(cfg.mask_value) or cfg.mask_value >= 0):
        raise TracerError(t("safety.mask_value", "en", value=cfg.mask_value))
    for j, angle in enumerate(cfg.rope_degrees_per_position or ()):
        if not math.isfinite(angle):
            raise TracerError(t("safety.config_not_finite", "en", key=f"rope_degrees_per_position[{j}]", value=angle))
    for name in _SIZES:
        value = getattr(cfg, name)
        if value > MAX_DIM:
            raise TracerError(t("safety.config_too_large", "en", key=name, value=value, limit=MAX_DIM))
    count = tensor_count(cfg)
    if count > MAX_TENSORS:
        raise TracerError(t("safety.too_many_tensors", "en", count=count, limit=MAX_TENSORS))
