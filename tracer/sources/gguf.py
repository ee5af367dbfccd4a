"""GGUF files (llama.cpp's format) read with the ``gguf`` package: config, weights and tokenizer of Qwen3.

A GGUF file is a header (magic ``GGUF``, version, key/value metadata, one info row per tensor) followed by
the tensor data, each tensor in its own ggml type (F32, F16, BF16, or block-quantized: Q8_0, Q4_K …).
``gguf.GGUFReader`` memory-maps the file; a tensor is dequantized to float32 the first time the forward
asks for it, with ``gguf.quants.dequantize``.

Tensor names map onto the Hugging Face names the engine uses through ``TENSOR_NAMES`` below (the one
table; llama.cpp's ``convert_hf_to_gguf.py`` writes these names). Qwen3's Q/K rows are **not** permuted in
GGUF (llama.cpp permutes only LLaMA-style models; Qwen2/Qwen3 use NEOX RoPE = Hugging Face's rotate_half),
so every tensor maps unchanged apart from the expert stacking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tracer import TracerError
from tracer.sources import error
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import weight_shapes

ARCHITECTURES = ("qwen3", "qwen3moe")
MAGIC = b"GGUF"

# GGUF name -> Hugging Face name. ``{i}`` is a layer; ``{e}`` marks a GGUF tensor that stacks every
# expert of the layer on a new leading axis (expert e = index e), one Hugging Face tensor per expert.
TENSOR_NAMES: tuple[tuple[str, str], ...] = (
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),  # absent when the embeddings are tied
    ("blk.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    ("blk.{i}.attn_q.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    ("blk.{i}.attn_k.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    ("blk.{i}.attn_v.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    ("blk.{i}.attn_output.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    ("blk.{i}.attn_q_norm.weight", "model.layers.{i}.self_attn.q_norm.weight"),
    ("blk.{i}.attn_k_norm.weight", "model.layers.{i}.self_attn.k_norm.weight"),
    ("blk.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    ("blk.{i}.ffn_gate.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    ("blk.{i}.ffn_up.weight", "model.layers.{i}.mlp.up_proj.weight"),
    ("blk.{i}.ffn_down.weight", "model.layers.{i}.mlp.down_proj.weight"),
    ("blk.{i}.ffn_gate_inp.weight", "model.layers.{i}.mlp.gate.weight"),
    ("blk.{i}.ffn_gate_exps.weight", "model.layers.{i}.mlp.experts.{e}.gate_proj.weight"),
    ("blk.{i}.ffn_up_exps.weight", "model.layers.{i}.mlp.experts.{e}.up_proj.weight"),
    ("blk.{i}.ffn_down_exps.weight", "model.layers.{i}.mlp.experts.{e}.down_proj.weight"),
)
IGNORED_TENSORS = ("rope_freqs.weight",)  # in llama.cpp's qwen3 tensor list, never written for Qwen3


def _regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{i\}|\{e\})", pattern)
    return re.compile("^" + "".join(r"(\d+)" if p in ("{i}", "{e}") else re.escape(p) for p in parts) + "$")


_HF_PATTERNS = [(_regex(hf), gg, "{e}" in hf) for gg, hf in TENSOR_NAMES]
_GGUF_PATTERNS = [(_regex(gg), hf) for gg, hf in TENSOR_NAMES]


def gguf_name(hf_name: str) -> tuple[str, int | None]:
    """The GGUF tensor holding a Hugging Face tensor, and the expert index within it (None if not stacked).

    >>> gguf_name("model.layers.3.self_attn.q_proj.weight")
    ('blk.3.attn_q.weight', None)
    >>> gguf_name("model.layers.0.mlp.experts.5.down_proj.weight")
    ('blk.0.ffn_down_exps.weight', 5)
    """
    for regex, gg, stacked in _HF_PATTERNS:
        m = regex.match(hf_name)
        if m:
            layer = m.group(1) if m.groups() else None
            name = gg.replace("{i}", layer) if layer is not None else gg
            return name, int(m.group(2)) if stacked else None
    raise KeyError(f"{hf_name} has no GGUF name")


def is_known_gguf_name(name: str) -> bool:
    return name in IGNORED_TENSORS or any(regex.match(name) for regex, _ in _GGUF_PATTERNS)


def _decimal(value: float) -> float:
    """A float32 metadata value as the shortest decimal that float32 rounds to it (1e-06, not 9.99999997e-07),
    i.e. the value the converter was given.

    >>> _decimal(float(np.float32(1e-6)))
    1e-06
    """
    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def is_gguf(path: Path) -> bool:
    """True if the file starts with GGUF's magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def dequantizable() -> set[str]:
    """Names of the ggml types the installed ``gguf`` package can dequantize."""
    from gguf import quants

    return {"F32", "F16"} | {q.name for q in quants._type_traits}


def require_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise error("needs_gguf") from None
    return gguf


class GGUFFile:
    """One GGUF file, opened and checked: architecture, config, tensor names, types and shapes.

    Every check runs here, before any weight is read, so a bad file fails in one line with nothing loaded.
    """

    def __init__(self, path: Path, label: str | None = None):
        gguf = require_gguf()
        self.path = path
        self.label = label or str(path)
        if not path.is_file():
            raise error("gguf_missing", path=path)
        try:
            self.reader = gguf.GGUFReader(str(path), "r")
        except ValueError as exc:
            if "is not a valid GGMLQuantizationType" in str(exc):
                raise error("gguf_unknown_type", path=self.label, detail=exc) from None
            raise error("gguf_unreadable", path=self.label, detail=exc) from None
        except Exception as exc:  # the reader indexes past the end of a truncated or lying header
            raise error("gguf_unreadable", path=self.label, detail=f"{type(exc).__name__}: {exc}") from None
        self.arch = self.text("general.architecture")
        if self.arch not in ARCHITECTURES:
            raise error("gguf_arch", path=self.label, arch=self.arch, supported=", ".join(ARCHITECTURES))
        self.tensors = {t.name: t for t in self.reader.tensors}
        supported = dequantizable()
        for tensor in self.reader.tensors:
            if tensor.tensor_type.name not in supported:
                raise error("gguf_type_unsupported", path=self.label, tensor=tensor.name,
                            type=tensor.tensor_type.name, supported=", ".join(sorted(supported)))
            if not is_known_gguf_name(tensor.name):
                raise error("gguf_unknown_tensor", path=self.label, tensor=tensor.name, arch=self.arch)

    # --- metadata ---------------------------------------------------------------------------------
    def value(self, key: str, default: Any = None) -> Any:
        field = self.reader.get_field(key)
        if field is None:
            return default
        try:
            return field.contents()
        except (UnicodeDecodeError, IndexError, ValueError) as exc:
            raise error("gguf_bad_key", path=self.label, key=key, detail=exc) from None

    def text(self, key: str) -> str:
        found = self.value(key)
        if not isinstance(found, str):
            raise error("gguf_missing_key", path=self.label, key=key)
        return found

    def number(self, key: str, default: Any = None) -> Any:
        found = self.value(f"{self.arch}.{key}", default)
        if found is None:
            raise error("gguf_missing_key", path=self.label, key=f"{self.arch}.{key}")
        if isinstance(found, list) or isinstance(found, str):
            raise error("gguf_bad_key", path=self.label, key=f"{self.arch}.{key}", detail=f"got {found!r}")
        return found

    # --- config ----------------------------------------------------------------------------------
    @cached_property
    def config(self) -> Qwen3Config:
        """The Qwen3Config the metadata describes, checked against every tensor's shape."""
        if "token_embd.weight" not in self.tensors:
            raise error("gguf_missing_tensor", path=self.label, tensor="token_embd.weight")
        heads = int(self.number("attention.head_count"))
        hidden = int(self.number("embedding_length"))
        fields: dict[str, Any] = {
            "vocab_size": int(self.tensors["token_embd.weight"].shape[-1]),
            "hidden_size": hidden,
            "intermediate_size": int(self.number("feed_forward_length", 0)),
            "num_hidden_layers": int(self.number("block_count")),
            "num_attention_heads": heads,
            "num_key_value_heads": int(self.number("attention.head_count_kv", heads)),
            "head_dim": int(self.number("attention.key_length", hidden // max(heads, 1))),
            "max_position_embeddings": int(self.number("context_length")),
            "rope_theta": _decimal(self.number("rope.freq_base", 1_000_000.0)),
            "rms_norm_eps": _decimal(self.number("attention.layer_norm_rms_epsilon")),
            "tie_word_embeddings": "output.weight" not in self.tensors,
        }
        fields["rope_scaling"] = self._rope_scaling()
        value_length = self.number("attention.value_length", fields["head_dim"])
        if value_length != fields["head_dim"]:
            raise error("gguf_contradiction", path=self.label,
                        detail=f"attention.value_length {value_length} != attention.key_length {fields['head_dim']}")
        if self.arch == "qwen3moe":
            fields["num_experts"] = int(self.number("expert_count"))
            fields["num_experts_per_tok"] = int(self.number("expert_used_count"))
            fields["moe_intermediate_size"] = int(self.number("expert_feed_forward_length"))
            fields["norm_topk_prob"] = bool(self.number("norm_top_k_prob", True))
        try:
            cfg = Qwen3Config(**fields)
        except TracerError as exc:
            raise error("gguf_contradiction", path=self.label, detail=exc) from None
        self._check_shapes(cfg)
        return cfg

    def _rope_scaling(self) -> Any:
        """``{arch}.rope.scaling.*`` (llama.cpp's keys) as the config's rope_scaling, or None."""
        from tracer.engine.longctx import RopeScaling

        kind = self.value(f"{self.arch}.rope.scaling.type")
        if kind in (None, "none"):
            return None
        spec: dict[str, Any] = {"rope_type": kind, "factor": _decimal(self.number("rope.scaling.factor"))}
        for key, name in (("rope.scaling.original_context_length", "original_max_position_embeddings"),
                          ("rope.scaling.yarn_beta_fast", "beta_fast"), ("rope.scaling.yarn_beta_slow", "beta_slow")):
            found = self.value(f"{self.arch}.{key}")
            if found is not None:
                spec[name] = int(found) if name.startswith("original") else _decimal(found)
        try:
            return RopeScaling.parse(spec, f"{self.arch}.rope.scaling")
        except TracerError as exc:
            raise error("gguf_rope_scaling", path=self.label, kind=kind, detail=exc) from None

    def _check_shapes(self, cfg: Qwen3Config) -> None:
        expected: dict[str, tuple[int, ...]] = {}
        for hf, shape in weight_shapes(cfg).items():
            name, expert = gguf_name(hf)
            if expert is None:
                expected[name] = shape
            else:
                expected[name] = (cfg.num_experts, *shape)
        for name, shape in expected.items():
            if name not in self.tensors:
                raise error("gguf_missing_tensor", path=self.label, tensor=name)
            found = tuple(int(n) for n in reversed(self.tensors[name].shape.tolist()))
            if found != shape:
                raise error("gguf_shape", path=self.label, tensor=name, found=list(found), expected=list(shape))
        extra = [n for n in self.tensors if n not in expected and n not in IGNORED_TENSORS]
        if extra:
            raise error("gguf_extra_tensor", path=self.label, tensor=extra[0], layers=cfg.num_hidden_layers)

    # --- per-tensor facts ----------------------------------------------------------------------------
    def tensor_type(self, hf_name: str) -> str:
        """The ggml type a Hugging Face tensor is stored in (``Q4_K``, ``F32`` …)."""
        return self.tensors[gguf_name(hf_name)[0]].tensor_type.name

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tensor in self.tensors.values():
            counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
        return counts

    def bits_per_weight(self, hf_name: str) -> float:
        """Storage bits per weight of a tensor's type: 8 × bytes per block / weights per block."""
        from gguf import GGML_QUANT_SIZES

        block, size = GGML_QUANT_SIZES[self.tensors[gguf_name(hf_name)[0]].tensor_type]
        return 8.0 * size / block

    def read(self, hf_name: str, stream: bool = False) -> np.ndarray:
        """One Hugging Face tensor as float32: a read-only view of the file for F32 tensors, or (``stream``)
        a copy, after which the tensor's file pages are released."""
        from gguf import GGMLQuantizationType, quants

        name, expert = gguf_name(hf_name)
        tensor = self.tensors[name]
        data = tensor.data if expert is None else tensor.data[expert]
        if tensor.tensor_type == GGMLQuantizationType.F32:
            value = np.array(data) if stream else data
        else:
            value = quants.dequantize(np.asarray(data), tensor.tensor_type).astype(np.float32, copy=False)
        if stream:
            from tracer.sources.stream import release_pages

            release_pages(self.reader.data, tensor.data_offset, tensor.data_offset + tensor.n_bytes)
        return value


class GGUFWeights(Mapping[str, np.ndarray]):
    """A GGUF file's tensors by Hugging Face name, dequantized on first use (and kept unless ``stream``).

    ``stream=True`` keeps nothing: each access dequantizes again, so only the layer being computed is in
    memory (the engine asks for one layer's weights at a time).
    """

    def __init__(self, file: GGUFFile, cfg: Qwen3Config, dtype: np.dtype = np.float32, stream: bool = False):
        self.file = file
        self.dtype = np.dtype(dtype)
        self.stream = stream
        self._shapes = weight_shapes(cfg)
        stored = weight_shapes(file.config)
        for name, shape in self._shapes.items():
            if stored.get(name) != shape:
                raise error("gguf_override_shape", path=file.label, tensor=name, found=list(stored.get(name, ())),
                            expected=list(shape))
        self._made: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._made:
            return self._made[name]
        if name not in self._shapes:
            raise KeyError(name)
        value = self.file.read(name, self.stream).reshape(self._shapes[name]).astype(self.dtype, copy=False)
        if not self.stream:
            self._made[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def stored_dtypes(self) -> set[str]:
        return {self.file.tensor_type(n) for n in self._shapes}

    def stored_bits(self, name: str) -> float:
        """Bits per weight of a tensor's ggml type (Q4_K: 4.5, Q8_0: 8.5, F32: 32)."""
        return self.file.bits_per_weight(name)
