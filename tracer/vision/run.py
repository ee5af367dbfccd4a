"""One traced Qwen3-VL run: preprocess the images, expand their placeholders, run the vision tower, then the
text model with the images spliced in (NumPy engine or the real transformers model)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracer import TracerError
from tracer.engine.model import Generation, KVCache, Sampling, decode_loop, forward
from tracer.engine.recorder import Recorder
from tracer.vision.forward import vision_forward
from tracer.vision.placement import Visual, expand_image_tokens, position_ids
from tracer.vision.preprocess import Patches, decode_images, preprocess
from tracer.vision.weights import TextView

PROBS_BYTES_LIMIT = 8 << 30


def _check_size(model: Any, num_patches: int, rec: Recorder) -> None:
    """Refuse a run whose recorded vision attention probabilities would not fit in memory."""
    vc = model.vision
    per_block = vc.num_heads * num_patches * num_patches * 4
    captured = sum(rec.wants(f"vision.blocks.{b}.attn.{part}") for b in range(vc.depth)
                   for part in ("scores", "masked_scores", "probs"))
    if captured * per_block > PROBS_BYTES_LIMIT:
        raise TracerError.of("vision.err_attention_memory", patches=num_patches,
                             gib=f"{captured * per_block / 2**30:.1f}")


def generate_vision(model: Any, ids: list[int], images: list[Any], rec: Recorder, sampling: Sampling,
                    max_new_tokens: int, stops: tuple[int, ...], backend: str, torch_dtype: str, device: str | None,
                    round_decimals: int | None) -> tuple[Generation, str, dict[str, str], dict[str, Any]]:
    """The prompt ids (one ``<|image_pad|>`` per image) and the images -> generation, dtype, library versions and
    the vision part of the trace's meta."""
    vc = model.vision
    if backend == "torch" and images:
        from tracer.backends import torch_vision

        patches: Patches | None = torch_vision.preprocess(model, decode_images(vc, images, rec), rec)
    else:
        patches = preprocess(vc, images, rec) if images else None
    counts = patches.token_counts(vc.spatial_merge_size) if patches is not None else []
    full_ids = expand_image_tokens(ids, counts, vc)
    bad = [tok for tok in full_ids if not 0 <= tok < model.cfg.vocab_size]
    if bad:
        raise TracerError.of("errors.token_outside", id=bad[0], last=model.cfg.vocab_size - 1)
    if len(full_ids) + max_new_tokens - 1 > model.cfg.max_position_embeddings:
        raise TracerError.of("vision.err_too_long", tokens=len(full_ids), limit=model.cfg.max_position_embeddings)
    meta: dict[str, Any] = {"config": {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in vc.__dict__.items()},
                            "image_sizes": [], "resized": [], "tokens_per_image": counts}
    if patches is not None:
        _check_size(model, len(patches.pixel_values), rec)
        meta["image_sizes"] = [list(s) for s in patches.sizes]
        meta["resized"] = [list(s) for s in patches.resized]
        meta["grid_thw"] = patches.grid_thw.tolist()
    grid = patches.grid_thw if patches is not None else np.zeros((0, 3), dtype=np.int64)
    pos, delta, mask = position_ids(full_ids, grid, vc)
    if backend == "torch":
        from tracer.backends import torch_vision

        if round_decimals is not None:
            raise TracerError.of("errors.round_torch")
        if vc.window_size:
            raise TracerError.of("vision.err_window_torch")
        gen, versions = torch_vision.generate(model, full_ids, patches, rec, sampling, max_new_tokens, stops,
                                              torch_dtype, device)
        return gen, torch_dtype, versions, meta
    visual = Visual(vc.mrope_section, delta, pos, mask)
    if patches is not None:
        out = vision_forward(vc, model.weights, patches.pixel_values, patches.grid_thw, rec)
        visual.embeds, visual.deepstack = out.embeds, out.deepstack
    text = TextView(model.cfg, model.weights)
    cache = KVCache.empty(model.cfg.num_hidden_layers)
    decode_visual = visual.for_decode()

    def step(tokens: list[int], step_rec: Recorder) -> np.ndarray:
        v = visual if cache.length == 0 else decode_visual
        return forward(model.cfg, text, np.array(tokens), step_rec, cache, v)

    gen = decode_loop(model.cfg, full_ids, rec, sampling, max_new_tokens, stops, step)
    return gen, str(model.weights[next(iter(model.weights))].dtype), {}, meta
