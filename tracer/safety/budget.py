"""The resource guard: what a run will cost (weights + activations + trace bytes, rough time) before anything
is allocated, and a one-line refusal when that exceeds the memory budget.

Every number here is closed-form arithmetic on the config's sizes (no weight is made, no layer is looped over
beyond one pass of the schema's names), so an absurd config is refused at once instead of filling the RAM.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from tracer import Message, TracerError
from tracer.i18n import pad, t
from tracer.sources.config import Qwen3Config
from tracer.traces.schema import SCHEMA

BUDGET_FRACTION = 0.75
"""The default budget: this share of the memory available when the command starts."""
ITEMSIZE = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}
FLOPS_PER_SECOND = {"numpy": 5e9, "torch": 2e10}
"""Rough sustained speed of each engine on one CPU core set, for the time estimate only."""
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3, "T": 1024**4, "TB": 1024**4, "TIB": 1024**4}


@dataclass(frozen=True)
class Estimate:
    """Bytes a run holds at its peak, split by where they go, and a rough wall time."""

    weights: int
    activations: int
    trace: int
    seconds: float

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.trace


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` on Linux; free physical pages elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def default_budget() -> int:
    """75% of the memory available now."""
    return int(available_memory() * BUDGET_FRACTION)


def parse_size(text: str, flag: str = "--max-memory") -> int:
    """``"4G"``, ``"512MB"``, ``"1.5GiB"`` or plain bytes -> bytes (binary units).

    >>> parse_size("4G"), parse_size("512 MB"), parse_size("1000")
    (4294967296, 536870912, 1000)
    """
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise TracerError.of("safety.bad_size", flag=flag, value=text)
    return int(float(match.group(1)) * _UNITS[unit])


def human(n: float) -> str:
    """Bytes as a short binary-unit string.

    >>> human(3 * 1024**3), human(512), human(1536)
    ('3.0 GiB', '512 B', '1.5 KiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def parameter_count(cfg: Qwen3Config) -> int:
    """Every parameter of the checkpoint, in closed form (``info.count_params`` lists them tensor by tensor).

    >>> from tracer.sources.presets import QWEN3_0_6B
    >>> parameter_count(QWEN3_0_6B)
    596049920
    """
    d, dh = cfg.hidden_size, cfg.head_dim
    h, hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    attention = 2 * h * dh * d + 2 * hkv * dh * d + 2 * dh + 2 * d
    n_sparse = cfg.sparse_layer_count()
    n_dense = cfg.num_hidden_layers - n_sparse
    per_expert = (3 if cfg.expert_act == "swiglu" else 2) * cfg.moe_intermediate_size * d
    sparse = cfg.num_experts * d + (cfg.num_experts if cfg.router_bias else 0) + cfg.num_experts * per_expert
    embed = cfg.vocab_size * d * (1 if cfg.tie_word_embeddings else 2)
    dense = 3 * cfg.intermediate_size * d
    return embed + (d if cfg.final_norm else 0) + cfg.num_hidden_layers * attention + n_dense * dense + n_sparse * sparse


def active_parameters(cfg: Qwen3Config) -> int:
    """Parameters one token multiplies by: only k of the E experts in a sparse layer."""
    if not cfg.is_moe:
        return parameter_count(cfg)
    per_expert = (3 if cfg.expert_act == "swiglu" else 2) * cfg.moe_intermediate_size * cfg.hidden_size
    idle = cfg.num_experts - cfg.num_experts_per_tok
    return parameter_count(cfg) - cfg.sparse_layer_count() * idle * per_expert


def _record_elements(cfg: Qwen3Config, t_new: int, s_total: int) -> dict[str, int]:
    """Elements of every per-layer record pattern of one forward pass over ``t_new`` tokens after a cache of
    ``s_total - t_new`` (an expert's rows: the expected T·k/E tokens)."""
    d, dh, v = cfg.hidden_size, cfg.head_dim, cfg.vocab_size
    h, hkv, e, k = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_experts, cfg.num_experts_per_tok
    rows = max(1, -(-t_new * k // max(e, 1)))
    sizes = {"T": t_new, "S": s_total, "D": d, "Dh": dh, "V": v, "H": h, "Hkv": hkv, "E": e, "k": k,
             "I": cfg.intermediate_size, "n_e": rows}
    out = {}
    for entry in SCHEMA:
        letters = [a.strip() for a in entry.shape.split("]")[0].strip("[").split(",") if a.strip()]
        n = 1
        for letter in letters:
            n *= sizes.get(letter, 1)
        if ".experts." in entry.pattern and letters[-1:] == ["I"]:
            n = n // max(cfg.intermediate_size, 1) * cfg.moe_intermediate_size
        out[entry.pattern] = n
    return out


def trace_bytes(cfg: Qwen3Config, prompt_tokens: int, max_new_tokens: int = 1, capture: list[str] | None = None,
                itemsize: int = 4, cache_views: bool = False) -> int:
    """Bytes of the records a run keeps: the schema's names for this config, filtered by ``capture``.

    The prompt's forward pass is counted exactly; the decode steps as that many copies of one step at the mean
    cache length (matched against ``capture`` as ``decode.1.*``). An expert's records count once per expert a
    token is routed to (at most T·k of the E experts). ``cache_views`` (the NumPy engine): every step's
    ``k_cache`` / ``v_cache`` is a view of the layer's buffers, counted at four times the final cache (a full
    buffer is replaced by one twice its size, and earlier steps' records keep the old ones: 2 + 1 + ½ + …).
    """
    total = _step_bytes(cfg, 0, prompt_tokens, prompt_tokens, capture, itemsize)
    if max_new_tokens > 1:
        mean_cache = prompt_tokens + max_new_tokens // 2
        total += (max_new_tokens - 1) * _step_bytes(cfg, 1, 1, mean_cache, capture, itemsize, cache_views)
        if cache_views:
            final = prompt_tokens + max_new_tokens - 1
            buffer = 4 * cfg.num_key_value_heads * final * cfg.head_dim * itemsize
            total += buffer * sum(capture is None or any(fnmatch.fnmatchcase(f"decode.1.layers.{i}.attn.{part}", g)
                                                         for g in capture)
                                  for i in range(cfg.num_hidden_layers) for part in ("k_cache", "v_cache"))
    return int(total)


def _step_bytes(cfg: Qwen3Config, step: int, t_new: int, s_total: int, capture: list[str] | None,
                itemsize: int, cache_views: bool = False) -> float:
    def kept(name: str) -> bool:
        return capture is None or any(fnmatch.fnmatchcase(name, g) for g in capture)

    total = 0.0
    n_sparse = cfg.sparse_layer_count()
    layers_of = {"moe": n_sparse, "mlp": cfg.num_hidden_layers - n_sparse, "": cfg.num_hidden_layers}
    prefix = "" if step == 0 else f"decode.{step}."
    elements = _record_elements(cfg, t_new, s_total)
    experts_used = min(cfg.num_experts, t_new * cfg.num_experts_per_tok)
    for entry in SCHEMA:
        pattern = entry.pattern
        if pattern == "embed.onehot" and (cfg.vocab_size > 4096 or step > 0):
            continue
        if (step == 0 or cache_views) and pattern.endswith(("k_cache", "v_cache")):
            continue
        name = pattern.replace("{s}", str(step)) if pattern.startswith("sample.") else prefix + pattern
        size = elements[pattern] * (8 if entry.shape.endswith("int") else itemsize)
        if pattern.endswith(".weighted"):
            size = t_new * cfg.hidden_size * itemsize
        if "{i}" not in name:
            total += size if kept(name) else 0
            continue
        part = "moe" if ".moe." in pattern else ("mlp" if ".mlp." in pattern else "")
        layers = layers_of[part]
        repeat = experts_used if "{e}" in pattern else 1
        if capture is None:
            total += size * layers * repeat
            continue
        share = layers / cfg.num_hidden_layers
        matched = sum(1 for i in range(cfg.num_hidden_layers) if kept(name.replace("{i}", str(i)).replace("{e}", "0")))
        total += size * repeat * matched * share
    return total


def estimate(cfg: Qwen3Config, prompt_tokens: int, max_new_tokens: int = 1, capture: list[str] | None = None,
             dtype: str = "float32", backend: str = "numpy") -> Estimate:
    """The memory and time one run needs: all weights, the largest transient activations, and the kept trace."""
    item = ITEMSIZE.get(dtype, 4)
    params = parameter_count(cfg)
    weights = params * (item if backend == "numpy" else 4 + item)  # torch: the NumPy weights and torch's copy
    s = prompt_tokens + max_new_tokens - 1
    t_new = prompt_tokens
    width = max(cfg.intermediate_size, cfg.moe_intermediate_size * max(cfg.num_experts_per_tok, 1),
                cfg.num_attention_heads * cfg.head_dim, cfg.hidden_size)
    transient = max(cfg.num_attention_heads * t_new * s * 3, t_new * cfg.vocab_size * 3, t_new * width * 4,
                    2 * cfg.num_key_value_heads * s * cfg.head_dim * cfg.num_hidden_layers)
    activations = transient * max(item, 4) + 2 * cfg.num_key_value_heads * s * cfg.head_dim * cfg.num_hidden_layers * 4
    kept = trace_bytes(cfg, prompt_tokens, max_new_tokens, capture, 8 if dtype == "float64" else 4,
                       cache_views=backend == "numpy")
    flops = 2 * active_parameters(cfg) * (prompt_tokens + max_new_tokens - 1)
    flops += 4 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * s * s
    copy_seconds = kept / 2e9  # recording copies every kept record once
    return Estimate(int(weights), int(activations), kept, flops / FLOPS_PER_SECOND.get(backend, 5e9) + copy_seconds)


def describe(est: Estimate) -> Message:
    """One line: the total and its parts (``.text(lang)`` in any language)."""
    return Message("safety.estimate", total=human(est.total), weights=human(est.weights),
                   activations=human(est.activations), trace=human(est.trace), seconds=_duration(est.seconds))


def check_budget(est: Estimate, budget: int, flag: str = "--max-memory") -> None:
    """Refuse a run whose estimate exceeds the budget, naming the estimate and how to shrink it."""
    if est.total > budget:
        raise TracerError.of("safety.over_budget", estimate=describe(est), budget=human(budget), flag=flag)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "< 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def estimate_report(cfg: Qwen3Config, tokens: int, max_memory: str | None = None, lang: str = "en") -> str:
    """The estimate of ``tracer info --tokens N`` as lines: each part, the total, the time and the budget."""
    est = estimate(cfg, tokens)
    budget = parse_size(max_memory) if max_memory else default_budget()
    rows = [("estimate_weights", human(est.weights)), ("estimate_activations", human(est.activations)),
            ("estimate_trace", human(est.trace)), ("estimate_total", human(est.total)),
            ("estimate_time", _duration(est.seconds)), ("estimate_budget", human(budget))]
    lines = [t("safety.estimate_header", lang, tokens=tokens, new=1, dtype="float32")]
    lines += [f"  {pad(t('safety.' + key, lang), 26)} {value:>12}" for key, value in rows]
    lines.append("  " + t("safety.estimate_fits" if est.total <= budget else "safety.estimate_over", lang))
    return "\n".join(lines)
