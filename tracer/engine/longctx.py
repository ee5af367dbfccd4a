"""Long context: RoPE scaling (linear, dynamic NTK, YaRN) and sliding-window attention, as transformers applies them.

The config keeps ``rope_scaling`` as a ``RopeScaling`` (read from ``rope_scaling`` or ``rope_parameters`` in a
``config.json``, or ``--set rope_scaling='{...}'``) and the sliding-window fields of Hugging Face's Qwen3Config.
This module checks them and turns them into what the forward pass needs: the frequencies and attention factor
of a forward over ``seq_len`` positions, and which layers slide.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tracer import TracerError
from tracer.engine import ops

if TYPE_CHECKING:
    from tracer.sources.config import Qwen3Config

ROPE_TYPES = ("linear", "dynamic", "yarn")
LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class RopeScaling:
    """One RoPE scaling block, with transformers' key names (None: the library's default applies)."""

    rope_type: str
    factor: float
    original_max_position_embeddings: int | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool | None = None

    @classmethod
    def parse(cls, value: Any, field: str = "rope_scaling") -> RopeScaling | None:
        """A ``rope_scaling`` / ``rope_parameters`` object -> RopeScaling, or None for default RoPE.

        The old key ``type`` is read as ``rope_type``; ``rope_theta`` belongs to the config's own field and is
        skipped here.

        >>> RopeScaling.parse({"type": "linear", "factor": 2}).factor
        2.0
        >>> RopeScaling.parse({"rope_type": "default", "rope_theta": 1e6}) is None
        True
        """
        if isinstance(value, RopeScaling) or value is None:
            return value
        if not isinstance(value, dict):
            raise TracerError.of("longctx.err_not_object", field=field, value=_show(value))
        d = {k: v for k, v in value.items() if k not in ("type", "rope_theta")}
        rope_type = value.get("rope_type", value.get("type", "default"))
        d.pop("rope_type", None)
        if rope_type in ("default", None):
            return None
        if rope_type not in ROPE_TYPES:
            raise TracerError.of("longctx.err_rope_type", field=f"{field}.rope_type", value=_show(rope_type),
                                 choices=", ".join(ROPE_TYPES))
        names = [f.name for f in dataclasses.fields(cls) if f.name != "rope_type"]
        for key in d:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                raise TracerError.of("longctx.err_unknown_key", field=f"{field}.{key}",
                                     hint=close[0] if close else ", ".join(names))
        if "factor" not in d:
            raise TracerError.of("longctx.err_missing", field=f"{field}.factor", rope_type=rope_type)
        if rope_type == "yarn" and d.get("original_max_position_embeddings") is None:
            raise TracerError.of("longctx.err_missing", field=f"{field}.original_max_position_embeddings",
                                 rope_type=rope_type)
        kw: dict[str, Any] = {"rope_type": rope_type}
        for key, raw in d.items():
            if raw is None:
                continue
            if key == "truncate":
                if not isinstance(raw, bool):
                    raise TracerError.of("longctx.err_bool", field=f"{field}.{key}", value=_show(raw))
                kw[key] = raw
                continue
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                raise TracerError.of("longctx.err_number", field=f"{field}.{key}", value=_show(raw))
            if key == "original_max_position_embeddings":
                if raw <= 0 or float(raw) != int(raw):
                    raise TracerError.of("longctx.err_positive_int", field=f"{field}.{key}", value=_show(raw))
                kw[key] = int(raw)
            else:
                kw[key] = float(raw)
        scaling = cls(**kw)
        scaling.check(field)
        return scaling

    def check(self, field: str = "rope_scaling") -> None:
        """Ranges: yarn needs factor > 1, linear and dynamic factor ≥ 1; betas and attention_factor positive."""
        if self.rope_type == "yarn" and not self.factor > 1:
            raise TracerError.of("longctx.err_factor_yarn", field=f"{field}.factor", value=_show(self.factor))
        if self.rope_type != "yarn" and not self.factor >= 1:
            raise TracerError.of("longctx.err_factor", field=f"{field}.factor", value=_show(self.factor),
                                 rope_type=self.rope_type)
        for key in ("beta_fast", "beta_slow", "attention_factor"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise TracerError.of("longctx.err_positive", field=f"{field}.{key}", value=_show(value))

    def to_dict(self) -> dict[str, Any]:
        """The block as transformers writes it (keys left at None omitted)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def rope_frequencies(cfg: Qwen3Config, seq_len: int) -> tuple[np.ndarray, float]:
    """ω [Dh/2] float64 and the attention factor a of a forward whose last position is ``seq_len − 1``.

    Only dynamic NTK depends on ``seq_len``: transformers recomputes it from max(position)+1 whenever that grows
    past the longest length seen, so within one generation (positions only grow) it is the table of the
    current length.
    """
    if cfg.rope_degrees_per_position is not None:
        return np.deg2rad(np.array(cfg.rope_degrees_per_position, dtype=np.float64)), 1.0
    s = cfg.rope_scaling
    if s is None:
        return ops.rope_inv_freq(cfg.head_dim, cfg.rope_theta), 1.0
    if s.rope_type == "linear":
        return ops.rope_inv_freq_linear(cfg.head_dim, cfg.rope_theta, s.factor)
    if s.rope_type == "dynamic":
        return ops.rope_inv_freq_dynamic(cfg.head_dim, cfg.rope_theta, s.factor, seq_len, cfg.max_position_embeddings)
    assert s.original_max_position_embeddings is not None  # parse() requires it for yarn
    return ops.rope_inv_freq_yarn(
        cfg.head_dim, cfg.rope_theta, s.factor, s.original_max_position_embeddings,
        beta_fast=s.beta_fast or 32.0, beta_slow=s.beta_slow or 1.0, attention_factor=s.attention_factor,
        mscale=s.mscale, mscale_all_dim=s.mscale_all_dim, truncate=True if s.truncate is None else s.truncate)


def original_window(cfg: Qwen3Config) -> int:
    """The window the model was trained on: YaRN's original_max_position_embeddings, else max_position_embeddings
    (which dynamic NTK treats as the original length)."""
    s = cfg.rope_scaling
    if s is not None and s.original_max_position_embeddings is not None and s.rope_type == "yarn":
        return s.original_max_position_embeddings
    return cfg.max_position_embeddings


def context_limit(cfg: Qwen3Config) -> int:
    """The longest sequence a trace may run: max_position_embeddings, times the factor for dynamic NTK (whose
    original length is max_position_embeddings itself)."""
    s = cfg.rope_scaling
    if s is not None and s.rope_type == "dynamic":
        return int(cfg.max_position_embeddings * s.factor)
    return cfg.max_position_embeddings


def layer_window(cfg: Qwen3Config, i: int) -> int | None:
    """The sliding window W of layer i, or None for full attention. Hugging Face's rule: no layer slides unless
    use_sliding_window; Qwen3-MoE then slides every layer; Qwen3 follows layer_types, or by default slides the
    layers i ≥ max_window_layers."""
    window = cfg.sliding_window if cfg.use_sliding_window else None
    if window is None:
        return None
    if cfg.is_moe:
        return window
    if cfg.layer_types is not None:
        return window if cfg.layer_types[i] == "sliding_attention" else None
    return window if i >= cfg.max_window_layers else None


def validate(cfg: Qwen3Config) -> None:
    """The long-context fields of a config, each error naming its field."""
    if cfg.rope_scaling is not None:
        cfg.rope_scaling.check()
        if cfg.rope_degrees_per_position is not None:
            raise TracerError.of("longctx.err_degrees")
    if cfg.sliding_window is not None and cfg.sliding_window <= 0:
        raise TracerError.of("longctx.err_window", value=cfg.sliding_window)
    if cfg.max_window_layers < 0:
        raise TracerError.of("longctx.err_max_window_layers", value=cfg.max_window_layers)
    if cfg.layer_types is not None:
        if cfg.is_moe:
            raise TracerError.of("longctx.err_layer_types_moe")
        if len(cfg.layer_types) != cfg.num_hidden_layers:
            raise TracerError.of("longctx.err_layer_types_len", got=len(cfg.layer_types),
                                 layers=cfg.num_hidden_layers)
        bad = [x for x in cfg.layer_types if x not in LAYER_TYPES]
        if bad:
            raise TracerError.of("longctx.err_layer_types_value", value=_show(bad[0]),
                                 choices=", ".join(LAYER_TYPES))
        if "sliding_attention" in cfg.layer_types and (not cfg.use_sliding_window or cfg.sliding_window is None):
            raise TracerError.of("longctx.err_layer_types_off")
