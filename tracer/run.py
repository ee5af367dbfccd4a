"""From a model name and a prompt to a saved trace: what the CLI, the app and the notebooks call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracer import TracerError
from tracer.config import Qwen3Config
from tracer.model import Generation, Sampling, generate
from tracer.presets import get_preset
from tracer.recorder import Recorder
from tracer.tokenizer import ToyTokenizer
from tracer.tracefile import record_meta
from tracer.weights import ArrayWeights, RandomWeights

DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class Model:
    """A config with its weights, where they came from, and how to turn text into ids."""

    name: str
    cfg: Qwen3Config
    weights: Mapping[str, np.ndarray]
    source: str
    seed: int | None
    tokenizer: ToyTokenizer | None
    suppress_tokens: tuple[int, ...]
    notes: tuple[str, ...] = ()


def load_model(name: str, overrides: list[str] | None = None, seed: int = 0, dtype: str = "float32") -> Model:
    """A preset by name, with ``--set`` overrides, in float32 or float64."""
    if dtype not in DTYPES:
        raise TracerError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if seed < 0:
        raise TracerError(f"--seed must be a non-negative whole number, got {seed}")
    preset = get_preset(name)
    cfg = preset.config.with_overrides(overrides or [])
    if preset.weights is None:
        return Model(name, cfg, RandomWeights(cfg, seed, DTYPES[dtype]), f"seeded random weights (seed {seed})",
                     seed, None, preset.suppress_tokens)
    try:
        weights = ArrayWeights(cfg, preset.weights(), DTYPES[dtype])
    except (KeyError, ValueError) as exc:
        changed = ", ".join(o.partition("=")[0] for o in overrides or [])
        raise TracerError(f"{name} has the fixed weights of seed 004; --set {changed} changes their shapes ({exc})"
                          ) from None
    tokenizer = ToyTokenizer(preset.vocab) if preset.vocab else None
    return Model(name, cfg, weights, "seed 004 worked-example weights", None, tokenizer, preset.suppress_tokens,
                 preset.notes)


def parse_token_list(text: str) -> list[int]:
    """``"0,1,2,3"`` -> [0, 1, 2, 3], with a clear error for anything else."""
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise TracerError(f"--tokens expects comma-separated whole numbers such as 0,1,2,3, got {text!r}") from None
    if not ids:
        raise TracerError("--tokens is empty; give at least one token id")
    return ids


def encode_prompt(model: Model, prompt: str) -> list[int]:
    if not prompt.strip():
        raise TracerError("the prompt is empty; give some text with --prompt or ids with --tokens")
    if model.tokenizer is None:
        raise TracerError(f"{model.name} has no tokenizer here; give token ids with --tokens")
    return model.tokenizer.encode(prompt)


def check_tokens(cfg: Qwen3Config, ids: list[int], max_new_tokens: int) -> None:
    """Reject ids outside the vocabulary and sequences longer than the model's context."""
    if not ids:
        raise TracerError("no input tokens; give --prompt or --tokens")
    bad = [t for t in ids if not 0 <= t < cfg.vocab_size]
    if bad:
        raise TracerError(f"token id {bad[0]} is outside the vocabulary (0..{cfg.vocab_size - 1})")
    total = len(ids) + max_new_tokens - 1
    if total > cfg.max_position_embeddings:
        raise TracerError(f"{len(ids)} prompt tokens + {max_new_tokens - 1} decode steps exceed "
                          f"max_position_embeddings ({cfg.max_position_embeddings}); shorten the prompt")


def token_labels(model: Model, ids: list[int]) -> list[str]:
    return model.tokenizer.token_strings(ids) if model.tokenizer else [str(t) for t in ids]


def run_trace(model: Model, ids: list[int], *, sampling: Sampling | None = None, max_new_tokens: int = 1,
              round_decimals: int | None = None, capture: list[str] | None = None,
              prompt: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any], Generation]:
    """Trace a prompt's forward pass and its generated tokens: (records, meta, generation)."""
    if max_new_tokens < 1:
        raise TracerError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if round_decimals is not None and not 0 <= round_decimals <= 12:
        raise TracerError(f"--round takes 0 to 12 decimals, got {round_decimals}")
    check_tokens(model.cfg, ids, max_new_tokens)
    sampling = sampling or Sampling(suppress=model.suppress_tokens)
    bad = [t for t in sampling.suppress if not 0 <= t < model.cfg.vocab_size]
    if bad:
        raise TracerError(f"cannot suppress token {bad[0]}: outside the vocabulary (0..{model.cfg.vocab_size - 1})")
    rec = Recorder(capture=capture, round_decimals=round_decimals)
    gen = generate(model.cfg, model.weights, ids, rec, sampling, max_new_tokens)
    meta = {
        "model": model.name, "source": model.source, "seed": model.seed, "backend": "numpy",
        "dtype": str(model.weights[next(iter(model.weights))].dtype), "round": round_decimals,
        "config": model.cfg.as_dict(), "model_type": model.cfg.model_type, "prompt": prompt,
        "token_ids": gen.prompt, "token_labels": token_labels(model, gen.prompt),
        "generated_ids": gen.new_tokens, "generated_labels": token_labels(model, gen.new_tokens),
        "stop_reason": gen.stop_reason,
        "sampling": {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
                     "suppress": list(sampling.suppress), "seed": sampling.seed},
        "vocab": list(model.tokenizer.vocab) if model.tokenizer else None,
        "capture": capture, "notes": list(model.notes), "records": record_meta(rec),
    }
    return rec.records, meta, gen
