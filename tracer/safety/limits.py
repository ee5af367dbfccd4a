"""Limits every config must respect: finite numbers, and sizes this tool can hold, checked in O(1).

A config that would name millions of weight tensors or a dimension past 2³¹ is refused here, before any code
loops over its layers or experts (``--set num_hidden_layers=1000000000`` must not hang ``tracer info``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tracer import TracerError

if TYPE_CHECKING:
    from tracer.sources.config import Qwen3Config

MAX_DIM = 2**31 - 1
"""Largest value of any size field (vocabulary, widths, heads, layers, context)."""
MAX_TENSORS = 500_000
"""Most weight tensors a config may name (Qwen3-235B-A22B has about 37,000)."""
_SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
          "num_key_value_heads", "head_dim", "max_position_embeddings", "num_experts", "num_experts_per_tok",
          "moe_intermediate_size", "decoder_sparse_step", "sliding_window", "max_window_layers")
_FLOATS = ("rope_theta", "rms_norm_eps", "initializer_range")


def tensor_count(cfg: Qwen3Config) -> int:
    """Weight tensors of a checkpoint of this config, in closed form (``weights.weight_shapes`` lists them).

    >>> from tracer.sources.presets import QWEN3_0_6B
    >>> tensor_count(QWEN3_0_6B)
    310
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
            raise TracerError.of("safety.config_not_finite", key=name, value=value)
    if cfg.initializer_range < 0:
        raise TracerError.of("safety.config_negative", key="initializer_range", value=cfg.initializer_range)
    if cfg.mask_value is not None and (math.isnan(cfg.mask_value) or cfg.mask_value >= 0):
        raise TracerError.of("safety.mask_value", value=cfg.mask_value)
    for j, angle in enumerate(cfg.rope_degrees_per_position or ()):
        if not math.isfinite(angle):
            raise TracerError.of("safety.config_not_finite", key=f"rope_degrees_per_position[{j}]", value=angle)
    for name in _SIZES:
        value = getattr(cfg, name, None)
        if value is not None and value > MAX_DIM:
            raise TracerError.of("safety.config_too_large", key=name, value=value, limit=MAX_DIM)
    count = tensor_count(cfg)
    if count > MAX_TENSORS:
        raise TracerError.of("safety.too_many_tensors", count=count, limit=MAX_TENSORS)


def check_suppress(vocab_size: int, suppress: tuple[int, ...] | list[int]) -> None:
    """Refuse suppressing every token of the vocabulary: no token could be generated."""
    if len(set(suppress)) >= vocab_size:
        raise TracerError.of("safety.suppress_all", vocab=vocab_size)


TEMPLATE_SECONDS = 5.0
"""Longest a chat template may take to render."""
TEMPLATE_CHARS = 2_000_000
"""Longest text a chat template may produce."""


def bounded_sandbox(base: Any) -> Any:
    """A subclass of jinja2's sandboxed environment whose ``*`` and ``**`` cannot build huge values at once
    (``'a' * 10**9``); loops and output are bounded by ``render_bounded``."""

    class BoundedSandbox(base):  # type: ignore[misc, valid-type]
        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
                raise TracerError.of("safety.template_too_long", limit=TEMPLATE_CHARS)
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > TEMPLATE_CHARS:
                        raise TracerError.of("safety.template_too_long", limit=TEMPLATE_CHARS)
            return super().call_binop(context, operator, left, right)

    return BoundedSandbox


def render_bounded(template: Any, context: dict[str, Any], seconds: float | None = None,
                   max_chars: int | None = None) -> str:
    """Render a compiled jinja2 template in a worker thread, stopping it past ``seconds`` or ``max_chars``.

    A template is Python bytecode, so an exception raised asynchronously in its thread stops even a loop that
    writes nothing; the output is counted chunk by chunk as it is generated.
    """
    import ctypes
    import threading

    seconds = TEMPLATE_SECONDS if seconds is None else seconds
    max_chars = TEMPLATE_CHARS if max_chars is None else max_chars
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            parts, size = [], 0
            for chunk in template.generate(**context):
                size += len(chunk)
                if size > max_chars:
                    raise TracerError.of("safety.template_too_long", limit=max_chars)
                parts.append(chunk)
            result["text"] = "".join(parts)
        except BaseException as exc:  # handed to the caller's thread, where it is raised
            result["error"] = exc

    worker = threading.Thread(target=work, name="chat-template", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(TimeoutError))
        worker.join(1.0)
        raise TracerError.of("safety.template_too_slow", seconds=f"{seconds:g}")
    if "error" in result:
        if isinstance(result["error"], TimeoutError):
            raise TracerError.of("safety.template_too_slow", seconds=f"{seconds:g}")
        raise result["error"]
    return result["text"]
