"""Where the image tokens go: the ``<|vision_start|><|image_pad|>×N<|vision_end|>`` expansion, the M-RoPE ids
of the whole sequence, and what the text forward needs to splice images in and add DeepStack features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracer import TracerError
from tracer.vision.config import VisionConfig
from tracer.vision.mrope import rope_index

PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


@dataclass
class Visual:
    """Image inputs of one forward pass of the text model (prefill), or only the M-RoPE offset (decode).

    mask [L] bool marks the image-token rows; embeds [M, D] are the merger's rows for them, in order;
    deepstack[j] [M, D] is added after decoder layer j; position_ids [3, L] are the prompt's (t, h, w) ids.
    """

    mrope_section: tuple[int, ...]
    rope_delta: int = 0
    position_ids: np.ndarray | None = None
    mask: np.ndarray | None = None
    embeds: np.ndarray | None = None
    deepstack: list[np.ndarray] = field(default_factory=list)

    def positions(self, start: int, length: int) -> np.ndarray:
        """[3, length] ids of the tokens at sequence index start…: the prompt's own ids, or afterwards
        index + rope_delta on all three axes."""
        if start == 0 and self.position_ids is not None and self.position_ids.shape[1] == length:
            return self.position_ids
        return np.broadcast_to(np.arange(start, start + length) + self.rope_delta, (3, length)).copy()

    def for_decode(self) -> Visual:
        return Visual(self.mrope_section, self.rope_delta)


def prompt_with_images(prompt: str, num_images: int) -> str:
    """The prompt itself when it names its images (``<|image_pad|>``), else one placeholder per image before it."""
    if "<|image_pad|>" in prompt or num_images == 0:
        return prompt
    return PLACEHOLDER * num_images + prompt


def expand_image_tokens(ids: list[int], counts: list[int], vc: VisionConfig) -> list[int]:
    """Each ``<|image_pad|>`` (one per image) repeated as many times as its image has merged tokens.

    >>> from tracer.vision.presets import QWEN3_VL_TINY_VISION as vc
    >>> expand_image_tokens([1, 151652, 151655, 151653], [3], vc)
    [1, 151652, 151655, 151655, 151655, 151653]
    """
    slots = [k for k, tok in enumerate(ids) if tok == vc.image_token_id]
    if len(slots) != len(counts):
        key = "vision.err_more_images" if len(counts) > len(slots) else "vision.err_fewer_images"
        raise TracerError.of(key, images=len(counts), slots=len(slots))
    out: list[int] = []
    image = 0
    for tok in ids:
        if tok == vc.image_token_id:
            out.extend([tok] * counts[image])
            image += 1
        else:
            out.append(tok)
    return out


def position_ids(ids: list[int], grid_thw: np.ndarray, vc: VisionConfig) -> tuple[np.ndarray, int, np.ndarray]:
    """The prompt's M-RoPE ids [3, L], rope delta and image mask [L] (get_rope_index of transformers)."""
    arr = np.asarray(ids, dtype=np.int64)
    mask = arr == vc.image_token_id
    grids = [tuple(int(v) for v in g) for g in grid_thw]
    # separate images must be separate runs of image tokens (a vision_end between them)
    runs = int(np.sum(mask[1:] & ~mask[:-1]) + (mask[0] if len(mask) else 0))
    if runs != len(grids):
        raise TracerError.of("vision.err_runs", runs=runs, images=len(grids))
    pos, delta = rope_index(arr, mask, grids, vc.spatial_merge_size)
    return pos, delta, mask
