"""Qwen3-VL checkpoint tensors: the text model under ``model.language_model.``, the vision tower under
``model.visual.``, and ``lm_head`` — the layout transformers' Qwen3VLForConditionalGeneration saves."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping

import numpy as np

from tracer.sources.config import Qwen3Config
from tracer.sources.weights import RandomWeights, weight_shapes
from tracer.vision.config import VisionConfig
from tracer.vision.forward import vision_weight_shapes

TEXT_PREFIX = "model.language_model."


def checkpoint_name(text_name: str) -> str:
    """A Qwen3 tensor name as Qwen3-VL stores it (the one table between the two layouts).

    >>> checkpoint_name("model.layers.0.mlp.up_proj.weight"), checkpoint_name("lm_head.weight")
    ('model.language_model.layers.0.mlp.up_proj.weight', 'lm_head.weight')
    """
    return TEXT_PREFIX + text_name[len("model."):] if text_name.startswith("model.") else text_name


def vl_weight_shapes(cfg: Qwen3Config, vc: VisionConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Qwen3-VL checkpoint with its shape: the text model's, then the vision tower's."""
    shapes = {checkpoint_name(n): s for n, s in weight_shapes(cfg).items()}
    shapes.update(vision_weight_shapes(vc))
    return shapes


class TextView(Mapping[str, np.ndarray]):
    """The text model's tensors under their Qwen3 names, read from a Qwen3-VL mapping."""

    def __init__(self, cfg: Qwen3Config, weights: Mapping[str, np.ndarray]):
        self._names = list(weight_shapes(cfg))
        self._weights = weights

    def __getitem__(self, name: str) -> np.ndarray:
        return self._weights[checkpoint_name(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class VLRandomWeights(Mapping[str, np.ndarray]):
    """Seeded random weights for a whole Qwen3-VL model, made on first use.

    Text tensors as ``tracer.sources.weights.RandomWeights`` (same values as the text-only model of the same config);
    vision linear/conv/embedding weights ~ N(0, initializer_range²), LayerNorm weights ones, biases zeros.
    """

    def __init__(self, cfg: Qwen3Config, vc: VisionConfig, seed: int, dtype: np.dtype = np.float32):
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.vc = vc
        self._text = RandomWeights(cfg, seed, dtype)
        self._text_names = {checkpoint_name(n): n for n in weight_shapes(cfg)}
        self._vision = vision_weight_shapes(vc)
        self._made: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._text_names:
            return self._text[self._text_names[name]]
        if name not in self._made:
            self._made[name] = self._make(name, self._vision[name])
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._text_names
        yield from self._vision

    def __len__(self) -> int:
        return len(self._text_names) + len(self._vision)

    def _make(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        is_norm = ".norm" in name and "linear" not in name
        if name.endswith(".bias"):
            return np.zeros(shape, dtype=self.dtype)
        if is_norm:
            return np.ones(shape, dtype=self.dtype)
        stream = np.random.SeedSequence(entropy=self.seed, spawn_key=(zlib.crc32(name.encode()),))
        values = np.random.default_rng(stream).standard_normal(shape, dtype=np.float32)
        values *= np.float32(self.vc.initializer_range)
        return values.astype(self.dtype, copy=False)
