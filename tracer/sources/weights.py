"""Checkpoint tensors by their Hugging Face names and layouts, and seeded random weights for any config.

Names and shapes follow what ``save_pretrained`` writes for ``Qwen3ForCausalLM`` and
``Qwen3MoeForCausalLM`` (Hub layout, one tensor per expert); linear weights are ``[out, in]``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping

import numpy as np

from tracer.sources.config import Qwen3Config


def weight_shapes(cfg: Qwen3Config) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of this config holds, in load order, with its shape."""
    d, dh = cfg.hidden_size, cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.vocab_size, d)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        shapes[f"{p}.input_layernorm.weight"] = (d,)
        shapes[f"{p}.self_attn.q_proj.weight"] = (cfg.num_attention_heads * dh, d)
        shapes[f"{p}.self_attn.k_proj.weight"] = (cfg.num_key_value_heads * dh, d)
        shapes[f"{p}.self_attn.v_proj.weight"] = (cfg.num_key_value_heads * dh, d)
        shapes[f"{p}.self_attn.o_proj.weight"] = (d, cfg.num_attention_heads * dh)
        shapes[f"{p}.self_attn.q_norm.weight"] = (dh,)
        shapes[f"{p}.self_attn.k_norm.weight"] = (dh,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (d,)
        if cfg.is_sparse_layer(i):
            shapes[f"{p}.mlp.gate.weight"] = (cfg.num_experts, d)
            if cfg.router_bias:
                shapes[f"{p}.mlp.gate.bias"] = (cfg.num_experts,)
            im = cfg.moe_intermediate_size
            for e in range(cfg.num_experts):
                if cfg.expert_act == "swiglu":
                    shapes[f"{p}.mlp.experts.{e}.gate_proj.weight"] = (im, d)
                shapes[f"{p}.mlp.experts.{e}.up_proj.weight"] = (im, d)
                shapes[f"{p}.mlp.experts.{e}.down_proj.weight"] = (d, im)
        else:
            shapes[f"{p}.mlp.gate_proj.weight"] = (cfg.intermediate_size, d)
            shapes[f"{p}.mlp.up_proj.weight"] = (cfg.intermediate_size, d)
            shapes[f"{p}.mlp.down_proj.weight"] = (d, cfg.intermediate_size)
    if cfg.final_norm:
        shapes["model.norm.weight"] = (d,)
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, d)
    return shapes


def lm_head_name(cfg: Qwen3Config) -> str:
    """The tensor the LM head multiplies by: the embedding table itself when embeddings are tied."""
    return "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"


class RandomWeights(Mapping[str, np.ndarray]):
    """Seeded random weights with Hugging Face's init, made on first use and then kept.

    Linear and embedding weights ~ N(0, initializer_range²); norm weights are ones; biases are zeros.
    Each tensor has its own random stream keyed by (seed, tensor name), so a tensor's values do not depend
    on which other tensors were made first, and one layer can be made without the others.
    """

    def __init__(self, cfg: Qwen3Config, seed: int, dtype: np.dtype = np.float32):
        self.cfg = cfg
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self._shapes = weight_shapes(cfg)
        self._made: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._made:
            self._made[name] = self._make(name, self._shapes[name])
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def _make(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name.endswith("norm.weight"):
            return np.ones(shape, dtype=self.dtype)
        if name.endswith(".bias"):
            return np.zeros(shape, dtype=self.dtype)
        stream = np.random.SeedSequence(entropy=self.seed, spawn_key=(zlib.crc32(name.encode()),))
        rng = np.random.default_rng(stream)
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(self.cfg.initializer_range)
        return values.astype(self.dtype, copy=False)


class ArrayWeights(Mapping[str, np.ndarray]):
    """Weights given as a dict of arrays (the toy presets), checked against the config's shapes."""

    def __init__(self, cfg: Qwen3Config, arrays: Mapping[str, np.ndarray], dtype: np.dtype = np.float32):
        expected = weight_shapes(cfg)
        missing = [n for n in expected if n not in arrays]
        if missing:
            raise KeyError(f"missing weights: {', '.join(missing)}")
        self._arrays = {n: np.asarray(arrays[n], dtype=dtype) for n in expected}
        for n, shape in expected.items():
            if self._arrays[n].shape != shape:
                raise ValueError(f"{n} has shape {self._arrays[n].shape}, the config needs {shape}")

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)
