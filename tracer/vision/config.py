"""The vision half of a Qwen3-VL model: Hugging Face ``vision_config`` fields, the special token ids,
M-RoPE's section sizes and the image processor's numbers (``preprocessor_config.json``)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass
from typing import Any

from tracer import TracerError
from tracer.sources.config import Qwen3Config, _coerce

IMAGE_TOKEN_ID = 151655  # <|image_pad|>
VIDEO_TOKEN_ID = 151656  # <|video_pad|>
VISION_START_TOKEN_ID = 151652  # <|vision_start|>
VISION_END_TOKEN_ID = 151653  # <|vision_end|>


def _finite(x: Any) -> bool:
    """Whether ``x`` is a finite real number (not a bool, not a string)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class VisionConfig:
    """Shape of one Qwen3-VL vision tower, how its tokens are placed, and how images are preprocessed."""

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    num_position_embeddings: int
    deepstack_visual_indexes: tuple[int, ...]
    in_channels: int = 3
    patch_size: int = 16
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    hidden_act: str = "gelu_pytorch_tanh"
    initializer_range: float = 0.02
    rope_theta: float = 10000.0
    # Placement in the token sequence and M-RoPE of the text model (top-level / text_config fields).
    image_token_id: int = IMAGE_TOKEN_ID
    video_token_id: int = VIDEO_TOKEN_ID
    vision_start_token_id: int = VISION_START_TOKEN_ID
    vision_end_token_id: int = VISION_END_TOKEN_ID
    mrope_section: tuple[int, ...] = (24, 20, 20)
    # The image processor (Qwen2-VL's, used by Qwen3-VL): smart_resize bounds, rescale and normalise.
    min_pixels: int = 65536
    max_pixels: int = 16777216
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    max_image_pixels: int = 50_000_000
    """Largest image (width × height) the tracer will decode; checked from the header before decoding."""
    window_size: int = 0
    """Teaching variant: Qwen2.5-VL's window attention in pixels (a multiple of patch × merge); 0 = none (Qwen3-VL)."""
    fullatt_block_indexes: tuple[int, ...] = ()
    """With window_size: the blocks that still attend to the whole image (Qwen2.5-VL: 7, 15, 23, 31)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f"vision.{f.name}", getattr(self, f.name), _TYPES[f.name]))
        self._validate()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def factor(self) -> int:
        """Image sides are rounded to multiples of this: patch_size × spatial_merge_size (32 for Qwen3-VL)."""
        return self.patch_size * self.spatial_merge_size

    @property
    def merged_size(self) -> int:
        """Width of a merged token before the merger MLP: hidden_size × merge²."""
        return self.hidden_size * self.spatial_merge_size ** 2

    def replace(self, **changes: Any) -> VisionConfig:
        for key in changes:
            _check_name(key)
        return dataclasses.replace(self, **changes)

    def vision_dict(self) -> dict[str, Any]:
        """Hugging Face's ``vision_config`` object."""
        keys = ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size", "num_position_embeddings",
                "deepstack_visual_indexes", "in_channels", "patch_size", "temporal_patch_size", "spatial_merge_size",
                "hidden_act", "initializer_range")
        d = {k: list(v) if isinstance(v, tuple) else v for k in keys for v in [getattr(self, k)]}
        d["model_type"] = "qwen3_vl"
        return d

    def preprocessor_dict(self) -> dict[str, Any]:
        """Hugging Face's ``preprocessor_config.json`` for Qwen2VLImageProcessor."""
        return {"image_processor_type": "Qwen2VLImageProcessor", "do_resize": True, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
                "image_mean": list(self.image_mean), "image_std": list(self.image_std),
                "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
                "patch_size": self.patch_size, "temporal_patch_size": self.temporal_patch_size,
                "merge_size": self.spatial_merge_size, "resample": 3}

    def _validate(self) -> None:
        for name in ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size",
                     "num_position_embeddings", "patch_size", "temporal_patch_size", "spatial_merge_size",
                     "min_pixels", "max_pixels", "max_image_pixels", "in_channels"):
            if getattr(self, name) <= 0:
                raise TracerError.of("errors.must_be_positive", name=f"vision.{name}", value=getattr(self, name))
        if self.hidden_size % self.num_heads or self.head_dim % 4:
            raise TracerError.of("errors.vision_head_dim", hidden=self.hidden_size, heads=self.num_heads)
        side = round(self.num_position_embeddings ** 0.5)
        if side * side != self.num_position_embeddings:
            raise TracerError.of("errors.vision_square", value=self.num_position_embeddings)
        bad = [b for b in self.deepstack_visual_indexes if not 0 <= b < self.depth]
        if bad:
            raise TracerError.of("errors.blocks_outside", name="vision.deepstack_visual_indexes", bad=bad,
                                     last=self.depth - 1)
        if self.min_pixels > self.max_pixels:
            raise TracerError.of("errors.vision_pixels", min=self.min_pixels, max=self.max_pixels)
        if len(self.image_mean) != self.in_channels or len(self.image_std) != self.in_channels:
            raise TracerError.of("errors.vision_channels", channels=self.in_channels)
        if not all(_finite(m) for m in self.image_mean):
            raise TracerError.of("vision.err_image_mean", mean=list(self.image_mean))
        if not all(_finite(s) and s > 0 for s in self.image_std):
            raise TracerError.of("vision.err_image_std", std=list(self.image_std))
        if self.window_size and (self.window_size < 0 or self.window_size % self.factor):
            raise TracerError.of("errors.vision_window", factor=self.factor, value=self.window_size)
        bad = [b for b in self.fullatt_block_indexes if not 0 <= b < self.depth]
        if bad:
            raise TracerError.of("errors.blocks_outside", name="vision.fullatt_block_indexes", bad=bad,
                                     last=self.depth - 1)
        if self.hidden_act != "gelu_pytorch_tanh":
            raise TracerError.of("errors.vision_act", value=self.hidden_act)


_TYPES = typing.get_type_hints(VisionConfig)


def _check_name(key: str) -> None:
    names = [f.name for f in dataclasses.fields(VisionConfig)]
    if key not in names:
        close = difflib.get_close_matches(key, names, n=3)
        if close:
            raise TracerError.of("errors.unknown_vision_key_close", key=key,
                                 close=", ".join("vision." + c for c in close))
        raise TracerError.of("errors.unknown_vision_key", key=key)


def split_overrides(text: Qwen3Config, vision: VisionConfig, assignments: list[str]
                    ) -> tuple[Qwen3Config, VisionConfig]:
    """Apply ``--set`` strings: ``vision.KEY=VALUE`` to the vision tower, plain ``KEY=VALUE`` to the text model."""
    text_items, changes = [], {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if key.strip().startswith("vision."):
            name = key.strip()[len("vision."):]
            _check_name(name)
            try:
                changes[name] = json.loads(raw)
            except json.JSONDecodeError:
                changes[name] = raw
        else:
            text_items.append(item)
    return text.with_overrides(text_items), vision.replace(**changes) if changes else vision


def from_hf_dict(d: dict[str, Any], preprocessor: dict[str, Any] | None = None) -> tuple[Qwen3Config, VisionConfig]:
    """A Hugging Face Qwen3-VL ``config.json`` (and optional ``preprocessor_config.json``) as the two configs."""
    text = dict(d.get("text_config") or {})
    vis = dict(d.get("vision_config") or {})
    if not text or not vis:
        raise TracerError.of("errors.vl_config")
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    section = rope.get("mrope_section", [24, 20, 20]) if isinstance(rope, dict) else [24, 20, 20]
    text_rope = {"rope_type": "default", "rope_theta": text.get("rope_theta", rope.get("rope_theta", 5_000_000.0))}
    text.update(model_type="qwen3", rope_parameters=text_rope)
    text.pop("rope_scaling", None)
    text.setdefault("tie_word_embeddings", d.get("tie_word_embeddings", False))
    cfg = Qwen3Config.from_hf_dict(text)
    names = {f.name for f in dataclasses.fields(VisionConfig)}
    kw = {k: v for k, v in vis.items() if k in names}
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        if key in d:
            kw[key] = d[key]
    kw["mrope_section"] = section
    if preprocessor:
        size = preprocessor.get("size") or {}
        kw["min_pixels"] = size.get("shortest_edge", preprocessor.get("min_pixels", kw.get("min_pixels", 65536)))
        kw["max_pixels"] = size.get("longest_edge", preprocessor.get("max_pixels", kw.get("max_pixels", 16777216)))
        for key in ("image_mean", "image_std"):
            if key in preprocessor:
                kw[key] = preprocessor[key]
    missing = [f.name for f in dataclasses.fields(VisionConfig) if f.default is dataclasses.MISSING
               and f.name not in kw]
    if missing:
        raise TracerError.of("errors.vision_config_lacks", fields=", ".join(missing))
    try:
        return cfg, VisionConfig(**kw)
    except TypeError as exc:
        raise TracerError.of("errors.vision_config_bad", detail=exc) from None


def to_hf_dict(cfg: Qwen3Config, vision: VisionConfig) -> dict[str, Any]:
    """The ``config.json`` transformers writes for Qwen3VLForConditionalGeneration."""
    text = {k: v for k, v in cfg.to_hf_dict().items() if k not in ("architectures",)}
    text["model_type"] = "qwen3_vl_text"
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": text.pop("rope_theta"),
                               "mrope_section": list(vision.mrope_section), "mrope_interleaved": True}
    return {"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
            "text_config": text, "vision_config": vision.vision_dict(),
            "image_token_id": vision.image_token_id, "video_token_id": vision.video_token_id,
            "vision_start_token_id": vision.vision_start_token_id, "vision_end_token_id": vision.vision_end_token_id,
            "tie_word_embeddings": cfg.tie_word_embeddings}
