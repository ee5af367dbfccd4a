"""Qwen3-VL's vision tower, step by step: patches -> patch embedding + interpolated position table ->
blocks with 2-D rotary attention confined to each image -> DeepStack taps -> 2×2 merger.

Like ``tracer.engine.model.forward`` this is the only place that names the vision trace points, through the
recorder identity ``x = rec("name", value, *inputs)``. Weights are read by their Hugging Face names
(``model.visual.…``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tracer.engine import ops
from tracer.engine.model import Params
from tracer.engine.recorder import Recorder
from tracer.vision import ops as vops
from tracer.vision.config import VisionConfig

PREFIX = "model.visual"
LN_EPS = 1e-6


@dataclass
class VisionOutput:
    """What the tower hands the language model: merged tokens [M, D_text] and one DeepStack feature per tap."""

    embeds: np.ndarray
    deepstack: list[np.ndarray]


def vision_forward(vc: VisionConfig, weights: Mapping[str, np.ndarray], pixel_values: np.ndarray,
                   grid_thw: np.ndarray, rec: Recorder) -> VisionOutput:
    """``vision.pixel_values`` [N, C·T·P·P] and ``vision.grid_thw`` [images, 3] (both recorded) -> merged tokens."""
    w = rec.params(weights)
    dtype = weights[f"{PREFIX}.pos_embed.weight"].dtype
    m = vc.spatial_merge_size

    # Patch embedding (a Conv3d with stride = kernel) and the learned position table, resampled per image.
    wp, bp = w(f"{PREFIX}.patch_embed.proj.weight"), w(f"{PREFIX}.patch_embed.proj.bias")
    x = rec("vision.patch_embed", vops.patch_embed(pixel_values.astype(dtype), wp, bp), pixel_values, wp, bp)
    table = w(f"{PREFIX}.pos_embed.weight")
    side = round(vc.num_position_embeddings ** 0.5)
    parts, coords = [], []
    for t, gh, gw in grid_thw.tolist():
        idx, wts = vops.pos_interpolation(gh, gw, side, m)
        parts.extend([vops.pos_embed(table, idx, wts.astype(np.float32))] * t)
        coords.extend([vops.patch_coords(gh, gw, m)] * t)
    pos = rec("vision.pos_embed", np.concatenate(parts).astype(dtype), table, grid_thw)
    x = rec("vision.embed", x + pos, x, pos)

    # 2-D rotary positions: (row, col) of each patch; h angles then w angles.
    coords_arr = rec("vision.rope.position_ids", np.concatenate(coords), grid_thw)
    cos_t, sin_t = vops.vision_rope_tables(coords_arr, vc.head_dim, vc.rope_theta, dtype)
    rope = (rec("vision.rope.cos", cos_t, coords_arr), rec("vision.rope.sin", sin_t, coords_arr))

    # Attention segments: one per image frame; a patch attends only to patches of its own frame.
    lengths = np.repeat(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0])
    cu = rec("vision.cu_seqlens", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), grid_thw)
    lowest = float(np.finfo(dtype).min)
    mask = vops.segment_mask(cu, lowest, dtype)
    window_mask = None
    if vc.window_size:  # teaching variant: Qwen2.5-VL's window attention (same windows as its get_window_index)
        windows = rec("vision.window_ids", vops.window_ids(grid_thw, m, vc.window_size, vc.patch_size), grid_thw)
        window_mask = np.where(windows[:, None] == windows[None, :], 0, lowest).astype(dtype)

    deepstack = []
    for b in range(vc.depth):
        windowed = window_mask is not None and b not in vc.fullatt_block_indexes
        x = block(vc, w, rec, b, x, rope, "vision.window_ids" if windowed else cu, window_mask if windowed else mask)
        if b in vc.deepstack_visual_indexes:
            j = vc.deepstack_visual_indexes.index(b)
            deepstack.append(merger(vc, w, rec, f"vision.deepstack.{j}", f"{PREFIX}.deepstack_merger_list.{j}", x,
                                    postshuffle=True))
    merged = merger(vc, w, rec, "vision.merger", f"{PREFIX}.merger", x, postshuffle=False)
    return VisionOutput(merged, deepstack)


def block(vc: VisionConfig, w: Params, rec: Recorder, b: int, x: np.ndarray, rope: tuple[np.ndarray, np.ndarray],
          segments: np.ndarray | str, mask: np.ndarray) -> np.ndarray:
    """One vision block: x + attn(LN(x)), then + MLP(LN(·)), the MLP being fc1 -> GELU(tanh) -> fc2.
    ``mask`` confines attention to each image (``segments``: cu_seqlens), or to each window."""
    p, n = f"{PREFIX}.blocks.{b}", f"vision.blocks.{b}"
    cos, sin = rope
    w1, b1 = w(f"{p}.norm1.weight"), w(f"{p}.norm1.bias")
    h = rec(f"{n}.attn_norm", vops.layer_norm(x, w1, b1, LN_EPS), x, w1, b1, op="layer_norm")
    wqkv, bqkv = w(f"{p}.attn.qkv.weight"), w(f"{p}.attn.qkv.bias")
    qkv = rec(f"{n}.attn.qkv", ops.linear(h, wqkv) + bqkv, h, wqkv, bqkv)
    q_, k_, v_ = vops.split_qkv(qkv, vc.num_heads)
    q = rec(f"{n}.attn.q_proj", q_, qkv)
    k = rec(f"{n}.attn.k_proj", k_, qkv)
    v = rec(f"{n}.attn.v_proj", v_, qkv)
    q_rot = rec(f"{n}.attn.q_rope", ops.apply_rope(q, cos, sin), q, cos, sin)
    k_rot = rec(f"{n}.attn.k_rope", ops.apply_rope(k, cos, sin), k, cos, sin)
    scores = rec(f"{n}.attn.scores", ops.attention_scores(q_rot, k_rot, vc.head_dim ** -0.5), q_rot, k_rot)
    seg_mask = rec(f"{n}.attn.mask", mask, segments, op="segment_mask")
    masked = rec(f"{n}.attn.masked_scores", scores + seg_mask, scores, seg_mask)
    probs = rec(f"{n}.attn.probs", ops.softmax(masked), masked)
    context = rec(f"{n}.attn.context", ops.attention_context(probs, v), probs, v)
    wo, bo = w(f"{p}.attn.proj.weight"), w(f"{p}.attn.proj.bias")
    attn_out = rec(f"{n}.attn.o_proj", ops.linear(ops.merge_heads(context), wo) + bo, context, wo, bo)
    mid = rec(f"{n}.resid_mid", x + attn_out, x, attn_out)

    w2, b2 = w(f"{p}.norm2.weight"), w(f"{p}.norm2.bias")
    h2 = rec(f"{n}.mlp_norm", vops.layer_norm(mid, w2, b2, LN_EPS), mid, w2, b2, op="layer_norm")
    wf1, bf1 = w(f"{p}.mlp.linear_fc1.weight"), w(f"{p}.mlp.linear_fc1.bias")
    fc1 = rec(f"{n}.mlp.fc1", ops.linear(h2, wf1) + bf1, h2, wf1, bf1)
    act = rec(f"{n}.mlp.act", vops.gelu_tanh(fc1), fc1, op="gelu_tanh")
    wf2, bf2 = w(f"{p}.mlp.linear_fc2.weight"), w(f"{p}.mlp.linear_fc2.bias")
    fc2 = rec(f"{n}.mlp.fc2", ops.linear(act, wf2) + bf2, act, wf2, bf2)
    return rec(f"{n}.resid_post", mid + fc2, mid, fc2)


def merger(vc: VisionConfig, w: Params, rec: Recorder, n: str, p: str, x: np.ndarray, postshuffle: bool
           ) -> np.ndarray:
    """2×2 merge + LayerNorm + fc1 -> GELU(erf) -> fc2 to the text width. The main merger normalises each patch
    before the merge (LayerNorm(D)); the DeepStack mergers normalise the merged row (LayerNorm(4D))."""
    wn, bn = w(f"{p}.norm.weight"), w(f"{p}.norm.bias")
    m = vc.spatial_merge_size
    if postshuffle:
        merged = rec(f"{n}.merge", vops.merge_patches(x, m), x)
        normed = rec(f"{n}.norm", vops.layer_norm(merged, wn, bn, LN_EPS), merged, wn, bn, op="layer_norm")
    else:
        normed_patches = rec(f"{n}.norm", vops.layer_norm(x, wn, bn, LN_EPS), x, wn, bn, op="layer_norm")
        normed = rec(f"{n}.merge", vops.merge_patches(normed_patches, m), normed_patches)
    w1, b1 = w(f"{p}.linear_fc1.weight"), w(f"{p}.linear_fc1.bias")
    fc1 = rec(f"{n}.fc1", ops.linear(normed, w1) + b1, normed, w1, b1)
    act = rec(f"{n}.act", vops.gelu_erf(fc1), fc1, op="gelu_erf")
    w2, b2 = w(f"{p}.linear_fc2.weight"), w(f"{p}.linear_fc2.bias")
    return rec(f"{n}.out", ops.linear(act, w2) + b2, act, w2, b2)


def vision_weight_shapes(vc: VisionConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the vision tower in a Qwen3-VL checkpoint, with its shape."""
    d, i, md = vc.hidden_size, vc.intermediate_size, vc.merged_size
    s: dict[str, tuple[int, ...]] = {
        f"{PREFIX}.patch_embed.proj.weight": (d, vc.in_channels, vc.temporal_patch_size, vc.patch_size, vc.patch_size),
        f"{PREFIX}.patch_embed.proj.bias": (d,),
        f"{PREFIX}.pos_embed.weight": (vc.num_position_embeddings, d),
    }
    for b in range(vc.depth):
        p = f"{PREFIX}.blocks.{b}"
        s.update({f"{p}.norm1.weight": (d,), f"{p}.norm1.bias": (d,), f"{p}.norm2.weight": (d,),
                  f"{p}.norm2.bias": (d,), f"{p}.attn.qkv.weight": (3 * d, d), f"{p}.attn.qkv.bias": (3 * d,),
                  f"{p}.attn.proj.weight": (d, d), f"{p}.attn.proj.bias": (d,),
                  f"{p}.mlp.linear_fc1.weight": (i, d), f"{p}.mlp.linear_fc1.bias": (i,),
                  f"{p}.mlp.linear_fc2.weight": (d, i), f"{p}.mlp.linear_fc2.bias": (d,)})
    mergers = [(f"{PREFIX}.merger", d)] + [(f"{PREFIX}.deepstack_merger_list.{j}", md)
                                           for j in range(len(vc.deepstack_visual_indexes))]
    for p, norm in mergers:
        s.update({f"{p}.norm.weight": (norm,), f"{p}.norm.bias": (norm,), f"{p}.linear_fc1.weight": (md, md),
                  f"{p}.linear_fc1.bias": (md,), f"{p}.linear_fc2.weight": (vc.out_hidden_size, md),
                  f"{p}.linear_fc2.bias": (vc.out_hidden_size,)})
    return s
