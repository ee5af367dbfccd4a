"""Interventions on a forward pass: zero a head, drop an expert, patch a recorded tensor.

They are applied where the records are made: ``--zero-head`` and ``--patch`` replace a record's value as the
recorder hands it back to the forward pass (``Editor``), so every record after it is recomputed from the edited
value; ``--drop-expert`` changes the router's top-k choice in ``model.moe``. The torch backend makes the real
model follow the same edits with hooks (``tracer.backends.torch_interventions``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracer import Message, TracerError, os_reason
from tracer.i18n import t
from tracer.sources.config import Qwen3Config

_DECODE_PREFIX = re.compile(r"^decode\.\d+\.")
# Records whose patch breaks "stream = embedding + every block's writes", so no direct logit attribution.
_STREAM_SUMS = re.compile(r"^(tokens|embed\.out|final_norm|logits|layers\.\d+\.(resid_mid|resid_post|attn\.o_proj|"
                          r"moe\.out|moe\.experts\.\d+\.weighted))$")


def bare_name(name: str) -> str:
    """A record name without its ``decode.{s}.`` prefix.

    >>> bare_name("decode.2.layers.0.attn.context")
    'layers.0.attn.context'
    """
    return _DECODE_PREFIX.sub("", name)


@dataclass(frozen=True, eq=False)
class Interventions:
    """What to change in a forward pass: (layer, head) pairs, (layer, expert) pairs, (record name, array)."""

    zero_heads: tuple[tuple[int, int], ...] = ()
    drop_experts: tuple[tuple[int, int], ...] = ()
    patches: tuple[tuple[str, np.ndarray], ...] = field(default=())
    patch_files: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.zero_heads or self.drop_experts or self.patches)

    def heads_zeroed(self, layer: int) -> list[int]:
        return sorted({h for li, h in self.zero_heads if li == layer})

    def experts_dropped(self, layer: int) -> list[int]:
        return sorted({e for li, e in self.drop_experts if li == layer})

    @property
    def attributable(self) -> bool:
        """Whether the residual stream is still the embedding plus every block's writes (no patched sum)."""
        return not any(_STREAM_SUMS.match(bare_name(name)) for name, _ in self.patches)

    def check(self, cfg: Qwen3Config) -> None:
        """One-line errors for indices outside the model."""
        layers = cfg.num_hidden_layers
        for flag, pairs in (("--zero-head", self.zero_heads), ("--drop-expert", self.drop_experts)):
            for layer, _ in pairs:
                if not 0 <= layer < layers:
                    raise TracerError.of("interp.layer_range", flag=flag, layer=layer, last=layers - 1)
        for layer, head in self.zero_heads:
            if not 0 <= head < cfg.num_attention_heads:
                raise TracerError.of("interp.head_range", layer=layer, head=head,
                                     last=cfg.num_attention_heads - 1)
        for layer, expert in self.drop_experts:
            if not cfg.is_sparse_layer(layer):
                raise TracerError.of("interp.dense_layer", layer=layer)
            if not 0 <= expert < cfg.num_experts:
                raise TracerError.of("interp.expert_range", layer=layer, expert=expert,
                                     last=cfg.num_experts - 1)
            left = cfg.num_experts - len(self.experts_dropped(layer))
            if left < cfg.num_experts_per_tok:
                raise TracerError.of("interp.too_many_dropped", layer=layer, left=left,
                                     k=cfg.num_experts_per_tok)

    def describe(self) -> dict[str, Any]:
        """What the trace meta lists."""
        return {"zero_heads": [f"{li}.{h}" for li, h in self.zero_heads],
                "drop_experts": [f"{li}.{e}" for li, e in self.drop_experts],
                "patches": [{"name": name, "file": file, "shape": list(array.shape), "dtype": str(array.dtype)}
                            for (name, array), file in zip(self.patches, self.patch_files)]}


class Editor:
    """The recorder's edit step for one run: zeroes heads in ``attn.context`` records and swaps in patches.

    Remembers which patches it applied, so a patch naming a record the run never makes is reported.
    """

    def __init__(self, interventions: Interventions):
        self.interventions = interventions
        self.patches = dict(interventions.patches)
        self.applied: set[str] = set()
        self._heads = {f"layers.{li}.attn.context": interventions.heads_zeroed(li)
                       for li, _ in interventions.zero_heads}

    def __call__(self, name: str, value: np.ndarray) -> np.ndarray:
        patch = self.patches.get(name)
        if patch is not None:
            value = np.asarray(value)
            if patch.shape != value.shape or patch.dtype != value.dtype:
                raise TracerError.of("interp.patch_mismatch", name=name, shape=list(patch.shape),
                                     dtype=patch.dtype, want_shape=list(value.shape), want_dtype=value.dtype)
            self.applied.add(name)
            return patch
        heads = self._heads.get(bare_name(name))
        if heads:
            from tracer.engine.ops import zero_heads

            return zero_heads(np.asarray(value), heads)
        return value

    def check_applied(self) -> None:
        missing = [name for name in self.patches if name not in self.applied]
        if missing:
            raise TracerError.of("interp.patch_unknown", name=missing[0])


def parse_pair(text: str, flag: str) -> tuple[int, int]:
    """``"3.1"`` -> (3, 1), for ``--zero-head L.H`` and ``--drop-expert L.E``.

    >>> parse_pair("3.1", "--zero-head")
    (3, 1)
    """
    layer, dot, index = text.strip().partition(".")
    if not dot or not layer.isdigit() or not index.isdigit():
        raise TracerError.of("interp.bad_pair", flag=flag, value=text)
    return int(layer), int(index)


def load_patch(spec: str) -> tuple[str, np.ndarray, str]:
    """``NAME=FILE.npy`` -> (name, array, file); the array must be finite."""
    name, eq, file = spec.partition("=")
    name, file = name.strip(), file.strip()
    if not eq or not name or not file:
        raise TracerError.of("interp.bad_patch", value=spec)
    path = Path(file)
    if not path.is_file():
        raise TracerError.of("interp.patch_missing", file=file)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TracerError.of("interp.patch_unreadable", file=file, reason=str(exc).splitlines()[0]) from None
    if not isinstance(array, np.ndarray):
        raise TracerError.of("interp.patch_unreadable", file=file, reason=Message("errors.not_single_npy"))
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise TracerError.of("interp.patch_nan", file=file, name=name)
    return name, array, file


def from_flags(zero_heads: list[str] | None, drop_experts: list[str] | None, patches: list[str] | None
               ) -> Interventions:
    """The ``--zero-head``, ``--drop-expert`` and ``--patch`` flags as one value."""
    loaded = [load_patch(p) for p in patches or []]
    names = [name for name, _, _ in loaded]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise TracerError.of("interp.patch_twice", name=dup)
    return Interventions(tuple(parse_pair(v, "--zero-head") for v in zero_heads or []),
                         tuple(parse_pair(v, "--drop-expert") for v in drop_experts or []),
                         tuple((name, array) for name, array, _ in loaded), tuple(file for _, _, file in loaded))


def export_record(trace: Any, name: str | None, out: str, lang: str = "en") -> str:
    """``tracer show FILE.npz NAME --npy OUT.npy``: one record as a .npy file, for ``--patch``; says what it wrote,
    in ``lang``."""
    if not name or name not in trace:
        raise TracerError.of("interp.npy_name", name=name or "", file=trace.label)
    path = Path(out)
    if path.suffix != ".npy":
        raise TracerError.of("interp.npy_suffix", file=out)
    if not path.parent.is_dir():
        raise TracerError.of("interp.npy_folder", file=out)
    array = np.asarray(trace[name])
    try:
        np.save(path, array)
    except OSError as exc:
        raise TracerError.of("sources.cannot_write", path=out, detail=os_reason(exc)) from None
    return t("interp.npy_wrote", lang, name=name, shape=list(array.shape), dtype=array.dtype, file=out)


def model_of(meta: dict[str, Any]) -> Any:
    """The model a trace was made with, rebuilt from its meta (preset + the config fields that differ, or the
    checkpoint directory), to run it again with interventions."""
    from tracer.sources.presets import PRESETS, get_preset
    from tracer.commands.run import load_model

    name, config = meta["model"], meta["config"]
    dtype = meta.get("dtype") if meta.get("dtype") in ("float32", "float64") else "float32"
    if name not in PRESETS:
        return load_model(name, dtype=dtype)
    base = get_preset(name).config.as_dict()
    overrides = [f"{k}={json.dumps(v)}" for k, v in config.items() if k in base and base[k] != v]
    return load_model(name, overrides, meta.get("seed") or 0, dtype)
