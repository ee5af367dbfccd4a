"""The one config type of qwen3-tracer: Hugging Face Qwen3 / Qwen3-MoE fields plus a few teaching variants.

The field names are the ones Hugging Face writes in ``config.json``. The teaching variants (at the end of
the class) exist so the hand-worked examples of the course (seed 004) run through the same engine; a real
Qwen3 checkpoint leaves them at their defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from tracer import Message, TracerError
from tracer.engine.longctx import RopeScaling
from tracer.engine.longctx import validate as validate_long_context


@dataclass(frozen=True)
class Qwen3Config:
    """Shape and numerics of one Qwen3 decoder (dense when ``num_experts == 0``, else Mixture-of-Experts)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    # Mixture-of-Experts (Qwen3-MoE); num_experts == 0 means a dense model.
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = True
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    # Long context (tracer/engine/longctx.py): RoPE scaling and sliding-window attention, Hugging Face's names and defaults.
    rope_scaling: RopeScaling | None = None
    """RoPE scaling (linear, dynamic, yarn); None = default RoPE. config.json may spell it rope_parameters."""
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    layer_types: tuple[str, ...] | None = None
    # Teaching variants (seed 004); real checkpoints keep the defaults.
    qk_norm: Literal["rms", "l2"] = "rms"
    """QK-Norm: per-head RMSNorm (Qwen3), or plain L2 normalisation of each row (seed 004 §3-5-4)."""
    rope_degrees_per_position: tuple[float, ...] | None = None
    """Rotation per position of each frequency pair in degrees, replacing ``rope_theta``'s frequencies
    (seed 004 §3-5-5 turns one pair by -90° per position)."""
    mask_value: float | None = None
    """Additive value for masked scores and suppressed tokens; None = most negative finite float (HF)."""
    expert_act: Literal["swiglu", "relu"] = "swiglu"
    """Expert MLP: SwiGLU with gate/up/down (Qwen3), or ReLU with up/down only (seed 004 §4-5-11)."""
    router_bias: bool = False
    """Add a learned bias to the router logits (seed 004 §4-5-10; Qwen3-MoE has none)."""
    final_norm: bool = True
    """Apply the final RMSNorm before the LM head (seed 004 feeds the block output to the head directly)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), _FIELD_TYPES[f.name]))
        self._validate()

    # --- derived facts ---------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def model_type(self) -> str:
        return "qwen3_moe" if self.is_moe else "qwen3"

    @property
    def kv_groups(self) -> int:
        """Query heads per key/value head (GQA): query head h reads KV head h // kv_groups."""
        return self.num_attention_heads // self.num_key_value_heads

    def is_sparse_layer(self, i: int) -> bool:
        """Hugging Face's rule: layer i uses experts unless listed in mlp_only_layers."""
        return self.is_moe and i not in self.mlp_only_layers and (i + 1) % self.decoder_sparse_step == 0

    # --- construction ----------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Qwen3Config:
        """A copy with some fields changed; unknown names raise a TracerError naming close matches."""
        for key in changes:
            _check_field_name(key)
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: list[str]) -> Qwen3Config:
        """Apply CLI ``KEY=VALUE`` strings; VALUE is read as JSON, or as a plain string if it is not JSON."""
        changes: dict[str, Any] = {}
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise TracerError.of("errors.set_syntax", item=item)
            if key == "rope_parameters":  # transformers v5 spelling: the scaling block, maybe with rope_theta
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError:
                    value = raw
                if isinstance(value, dict) and "rope_theta" in value:
                    changes["rope_theta"] = value["rope_theta"]
                changes["rope_scaling"] = RopeScaling.parse(value, key)
                continue
            _check_field_name(key)
            try:
                changes[key] = json.loads(raw)
            except json.JSONDecodeError:
                changes[key] = raw
        return self.replace(**changes)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> Qwen3Config:
        """Read a Hugging Face ``config.json`` of Qwen3 or Qwen3-MoE (Hub, transformers v4 or v5 spelling)."""
        model_type = d.get("model_type")
        if model_type not in ("qwen3", "qwen3_moe"):
            raise TracerError.of("errors.model_type", model_type=model_type)
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in fields}
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        if "rope_theta" not in kw and isinstance(rope, dict) and "rope_theta" in rope:
            kw["rope_theta"] = rope["rope_theta"]
        if rope:
            kw["rope_scaling"] = RopeScaling.parse(rope, "rope_parameters" if d.get("rope_parameters") else "rope_scaling")
        if "num_experts" not in kw and "num_local_experts" in d:
            kw["num_experts"] = d["num_local_experts"]
        if model_type == "qwen3":
            for moe_key in ("num_experts", "num_experts_per_tok", "moe_intermediate_size"):
                kw.pop(moe_key, None)
        if kw.get("head_dim") is None and "hidden_size" in d and "num_attention_heads" in d:
            kw["head_dim"] = d["hidden_size"] // d["num_attention_heads"]
        if kw.get("num_key_value_heads") is None and "num_attention_heads" in d:
            kw["num_key_value_heads"] = d["num_attention_heads"]
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in kw]
        if missing:
            raise TracerError.of("errors.config_lacks", fields=", ".join(missing))
        return cls(**kw)

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` Hugging Face writes for this model (teaching variants kept as extra keys)."""
        d: dict[str, Any] = {
            "architectures": ["Qwen3MoeForCausalLM" if self.is_moe else "Qwen3ForCausalLM"],
            "model_type": self.model_type,
        }
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _MOE_FIELDS and not self.is_moe:
                continue
            if f.name in _TEACHING_FIELDS and value == f.default:
                continue
            if f.name in _LONG_CONTEXT_FIELDS and value == f.default:
                continue
            if isinstance(value, RopeScaling):
                value = value.to_dict()
            d[f.name] = list(value) if isinstance(value, tuple) else value
        d["attention_bias"] = False
        return d

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    # --- validation ------------------------------------------------------------------------------
    def sparse_layer_count(self) -> int:
        """How many layers use experts, counted in O(len(mlp_only_layers)) rather than looped over."""
        if not self.is_moe:
            return 0
        step = self.decoder_sparse_step
        listed = {i for i in self.mlp_only_layers if 0 <= i < self.num_hidden_layers and (i + 1) % step == 0}
        return self.num_hidden_layers // step - len(listed)

    def _validate(self) -> None:
        positive = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "head_dim", "max_position_embeddings", "decoder_sparse_step"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise TracerError.of("errors.must_be_positive", name=name, value=getattr(self, name))
        if self.num_attention_heads % self.num_key_value_heads:
            raise TracerError.of("errors.gqa_groups", heads=self.num_attention_heads, kv=self.num_key_value_heads)
        if self.head_dim % 2:
            raise TracerError.of("errors.head_dim_even", value=self.head_dim)
        if self.rope_degrees_per_position is not None and len(self.rope_degrees_per_position) != self.head_dim // 2:
            raise TracerError.of("errors.rope_degrees_count", want=self.head_dim // 2, head_dim=self.head_dim,
                                     got=len(self.rope_degrees_per_position))
        if self.rope_theta <= 1 and self.rope_degrees_per_position is None:
            raise TracerError.of("errors.rope_theta", value=self.rope_theta)
        if self.rms_norm_eps < 0:
            raise TracerError.of("errors.not_negative", name="rms_norm_eps", value=self.rms_norm_eps)
        if self.hidden_act != "silu":
            raise TracerError.of("errors.hidden_act", value=self.hidden_act)
        if self.num_experts < 0:
            raise TracerError.of("errors.not_negative", name="num_experts", value=self.num_experts)
        n_sparse = self.sparse_layer_count()
        if n_sparse:
            if not 1 <= self.num_experts_per_tok <= self.num_experts:
                raise TracerError.of("errors.experts_per_tok", experts=self.num_experts, value=self.num_experts_per_tok)
            if self.moe_intermediate_size <= 0:
                raise TracerError.of("errors.must_be_positive", name="moe_intermediate_size",
                                     value=self.moe_intermediate_size)
        if n_sparse < self.num_hidden_layers and self.intermediate_size <= 0:
            raise TracerError.of("errors.must_be_positive", name="intermediate_size", value=self.intermediate_size)
        bad = [i for i in self.mlp_only_layers if not 0 <= i < self.num_hidden_layers]
        if bad:
            raise TracerError.of("errors.layers_outside", name="mlp_only_layers", bad=bad,
                                 last=self.num_hidden_layers - 1)
        from tracer.safety.limits import check_config_limits

        check_config_limits(self)  # finite numbers, and sizes a machine can hold, before anything loops over them
        validate_long_context(self)


_TEACHING_FIELDS = {"qk_norm", "rope_degrees_per_position", "mask_value", "expert_act", "router_bias", "final_norm"}
_MOE_FIELDS = {"num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
               "decoder_sparse_step", "mlp_only_layers"}
_LONG_CONTEXT_FIELDS = {"rope_scaling", "use_sliding_window", "sliding_window", "max_window_layers", "layer_types"}
_FIELD_TYPES = typing.get_type_hints(Qwen3Config)


def _check_field_name(key: str) -> None:
    names = [f.name for f in dataclasses.fields(Qwen3Config)]
    if key not in names:
        close = difflib.get_close_matches(key, names, n=3)
        if close:
            raise TracerError.of("errors.unknown_key_close", key=key, close=", ".join(close))
        raise TracerError.of("errors.unknown_key", key=key, names=", ".join(names))


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the field's annotated type, converting lists to tuples and ints to floats."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(name, value, inner)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str or origin is Literal:
        if isinstance(value, str) and (origin is not Literal or value in args):
            return value
        if origin is Literal:
            raise TracerError.of("errors.must_be_one_of", name=name, choices=", ".join(args), value=value)
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(f"{name}[{j}]", v, args[0]) for j, v in enumerate(value))
    elif tp is RopeScaling:
        return RopeScaling.parse(value, name)
    else:
        raise TypeError(f"no coercion rule for {tp}")
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(tp, "list" if origin is tuple else None)
    want = Message(f"errors.kind_{kind}") if kind else str(tp)
    raise TracerError.of("errors.must_be", name=name, want=want,
                         value=json.dumps(value, ensure_ascii=False, default=str))
