"""The operations of Qwen3-VL's vision path: small pure NumPy functions, no batch dimension.

Letters: N patches, D vision width, H heads, Dh head dim, P patch side, C channels, T temporal patch size,
m spatial merge size, gh × gw patch grid, S side of the learned position table, L text tokens.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(H, W) -> (H', W'): both multiples of ``factor``, H'·W' within [min_pixels, max_pixels], aspect kept.

    Round each side to the nearest multiple (ties to even, as Python's round); if the area is too large,
    scale both sides down by β = √(H·W / max) and floor; if too small, scale up by β = √(min / (H·W)) and ceil.

    >>> smart_resize(64, 96, 32, 65536, 16777216), smart_resize(448, 448, 32, 65536, 16777216)
    ((224, 320), (448, 448))
    >>> smart_resize(1080, 1920, 32, 65536, 16777216)
    (1088, 1920)
    """
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def rescale_normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """[H, W, C] uint8 -> [C, H, W] float32. x' = (x · 1/255 − mean_c) / std_c.

    The rescale is done in float64 and rounded once to float32, then normalised in float32 (as transformers).

    >>> rescale_normalize(np.array([[[0, 255, 51]]], dtype=np.uint8), (0.5,) * 3, (0.5,) * 3).ravel()
    array([-1. ,  1. , -0.6], dtype=float32)
    """
    x = (image.astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    return ((x - m) / s).transpose(2, 0, 1)


def patchify(image: np.ndarray, patch: int, temporal: int, merge: int) -> np.ndarray:
    """[C, H, W] -> [N, C·T·P·P], N = (H/P)·(W/P), rows in merge-block order.

    The still image is repeated T times along time. Rows: each m×m block of patches in raster order, and
    inside a block its patches in raster order. Columns: c, t, y, x within the patch (Conv3d weight order).

    >>> img = np.arange(16, dtype=np.float32).reshape(1, 4, 4)   # 1 channel, 4×4 pixels
    >>> patchify(img, patch=1, temporal=1, merge=2)[:, 0].astype(int)   # patch grid 4×4, blocks of 2×2
    array([ 0,  1,  4,  5,  2,  3,  6,  7,  8,  9, 12, 13, 10, 11, 14, 15])
    """
    c, h, w = image.shape
    gh, gw = h // patch, w // patch
    x = image.reshape(c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(1, 4, 2, 5, 0, 3, 6)  # (gh/m, gw/m, m, m, C, P, P)
    x = np.broadcast_to(x[:, :, :, :, :, None], x.shape[:5] + (temporal, patch, patch))
    return np.ascontiguousarray(x).reshape(gh * gw, c * temporal * patch * patch)


def patch_coords(grid_h: int, grid_w: int, merge: int) -> np.ndarray:
    """-> [N, 2] int: (row, col) of each patch in merge-block order (the 2-D rotary positions).

    >>> patch_coords(2, 4, 2).T
    array([[0, 0, 1, 1, 0, 0, 1, 1],
           [0, 1, 0, 1, 2, 3, 2, 3]])
    """
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    blocks = lambda a: a.reshape(grid_h // merge, merge, grid_w // merge, merge).transpose(0, 2, 1, 3).ravel()
    return np.stack([blocks(rows), blocks(cols)], axis=1)


# ---------------------------------------------------------------------------------------------------
# Vision tower
# ---------------------------------------------------------------------------------------------------


def patch_embed(pixels: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """[N, C·T·P·P], [D, C, T, P, P], [D] -> [N, D]. A Conv3d whose stride equals its kernel is one matrix
    product per patch: y = x · W.reshape(D, −1)ᵀ + b.

    >>> patch_embed(np.ones((1, 2)), np.array([[[[[1.]]], [[[2.]]]]]), np.array([0.5]))
    array([[3.5]])
    """
    return pixels @ weight.reshape(weight.shape[0], -1).T + bias


def pos_interpolation(grid_h: int, grid_w: int, side: int, merge: int) -> tuple[np.ndarray, np.ndarray]:
    """-> indices [N, 4] int, weights [N, 4]: the 4 table rows (and bilinear weights) of each patch.

    Patch row r maps to y = r·(S−1)/(gh−1) on the S×S table (align_corners; 0 when gh = 1), the same for
    columns; taps (y0,x0), (y0,x1), (y1,x0), (y1,x1) with weights (1−dy)(1−dx), (1−dy)dx, dy(1−dx), dy·dx.
    Rows are in merge-block order, like the patches.

    >>> idx, wts = pos_interpolation(2, 2, side=3, merge=2)   # the 4 corners of a 3×3 table
    >>> idx[:, 0], wts.sum(axis=1)
    (array([0, 2, 6, 8]), array([1., 1., 1., 1.]))
    """
    ys = np.linspace(0, side - 1, grid_h) if grid_h > 1 else np.zeros(1)
    xs = np.linspace(0, side - 1, grid_w) if grid_w > 1 else np.zeros(1)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, side - 1), np.minimum(x0 + 1, side - 1)
    dy, dx = ys - y0, xs - x0
    coords = patch_coords(grid_h, grid_w, merge)
    r, c = coords[:, 0], coords[:, 1]
    idx = np.stack([y0[r] * side + x0[c], y0[r] * side + x1[c], y1[r] * side + x0[c], y1[r] * side + x1[c]], axis=1)
    wts = np.stack([(1 - dy[r]) * (1 - dx[c]), (1 - dy[r]) * dx[c], dy[r] * (1 - dx[c]), dy[r] * dx[c]], axis=1)
    return idx, wts


def pos_embed(table: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[S², D], [N, 4], [N, 4] -> [N, D]. pe[n] = Σ_k weights[n, k] · table[indices[n, k]].

    >>> pos_embed(np.array([[0., 0.], [2., 4.]]), np.array([[0, 1, 0, 1]]), np.array([[0.25, 0.25, 0.25, 0.25]]))
    array([[1., 2.]])
    """
    return (table[indices] * weights[:, :, None].astype(table.dtype)).sum(axis=1)


def vision_rope_tables(coords: np.ndarray, head_dim: int, theta: float, dtype: np.dtype = np.float32
                       ) -> tuple[np.ndarray, np.ndarray]:
    """[N, 2] (row, col) -> cos, sin [N, Dh]. F = Dh/4 frequencies ω_j = θ^(−4j/Dh);
    angles = [row·ω, col·ω] (h first, then w), laid out as cat(angles, angles) for rotate_half.

    >>> cos, sin = vision_rope_tables(np.array([[1, 2]]), head_dim=4, theta=10000.0)
    >>> sin.round(4)
    array([[0.8415, 0.9093, 0.8415, 0.9093]], dtype=float32)
    """
    inv = (1.0 / theta ** (np.arange(0, head_dim // 2, 2, dtype=np.float32) / (head_dim // 2))).astype(np.float32)
    freqs = coords[:, :, None].astype(np.float32) * inv  # (N, 2, F)
    angles = np.concatenate([freqs[:, 0], freqs[:, 1]], axis=-1)
    full = np.concatenate([angles, angles], axis=-1)
    return np.cos(full).astype(dtype), np.sin(full).astype(dtype)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """[..., D], [D], [D] -> [..., D]. y = (x − mean) / sqrt(var + eps) ⊙ w + b, over the last axis.

    >>> layer_norm(np.array([[1., 3.]]), np.ones(2), np.zeros(2), eps=0.0)
    array([[-1.,  1.]])
    """
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (``gelu_pytorch_tanh``): ½x(1 + tanh(√(2/π)(x + 0.044715x³))).

    >>> gelu_tanh(np.array([-1., 0., 1.])).round(4)
    array([-0.1588,  0.    ,  0.8412])
    """
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi).astype(x.dtype) * (x + 0.044715 * x ** 3)))


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """GELU, exact (``nn.GELU()``): ½x(1 + erf(x/√2)); erf evaluated in float64.

    >>> gelu_erf(np.array([-1., 0., 1.])).round(4)
    array([-0.1587,  0.    ,  0.8413])
    """
    erf = np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64) / math.sqrt(2))
    return (0.5 * x.astype(np.float64) * (1 + erf)).astype(x.dtype)


def split_qkv(qkv: np.ndarray, num_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, 3D] -> q, k, v [H, N, Dh]: columns [0, D) are q, [D, 2D) k, [2D, 3D) v, each head-major.

    >>> q, k, v = split_qkv(np.arange(6.).reshape(1, 6), 1)
    >>> q, v
    (array([[[0., 1.]]]), array([[[4., 5.]]]))
    """
    n, width = qkv.shape
    x = qkv.reshape(n, 3, num_heads, width // (3 * num_heads)).transpose(1, 2, 0, 3)
    return x[0], x[1], x[2]


def segment_ids(cu_seqlens: np.ndarray) -> np.ndarray:
    """[k+1] cumulative lengths -> [N] the segment (image frame) of each patch.

    >>> segment_ids(np.array([0, 2, 5]))
    array([0, 0, 1, 1, 1])
    """
    return np.repeat(np.arange(len(cu_seqlens) - 1), np.diff(cu_seqlens))


def segment_mask(cu_seqlens: np.ndarray, mask_value: float, dtype: np.dtype = np.float32) -> np.ndarray:
    """-> [N, N]. 0 where two patches belong to the same image frame, else mask_value: images never see
    each other (Hugging Face runs attention once per segment, which is the same thing).

    >>> segment_mask(np.array([0, 1, 3]), -9.0)
    array([[ 0., -9., -9.],
           [-9.,  0.,  0.],
           [-9.,  0.,  0.]], dtype=float32)
    """
    seg = segment_ids(cu_seqlens)
    return np.where(seg[:, None] == seg[None, :], 0, mask_value).astype(dtype)


def merge_patches(x: np.ndarray, merge: int) -> np.ndarray:
    """[N, D] -> [N/m², m²·D]: each m×m block of consecutive rows (merge-block order) side by side.

    >>> merge_patches(np.arange(8).reshape(8, 1), 2)
    array([[0, 1, 2, 3],
           [4, 5, 6, 7]])
    """
    return x.reshape(-1, merge * merge * x.shape[-1])


# ---------------------------------------------------------------------------------------------------
# Placement in the text model
# ---------------------------------------------------------------------------------------------------


def splice_rows(embeds: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[L, D], [L] bool, [M, D] -> [L, D]: the rows where mask is true replaced, in order, by ``rows``.

    >>> splice_rows(np.zeros((3, 1)), np.array([False, True, True]), np.array([[7.], [8.]]))
    array([[0.],
           [7.],
           [8.]])
    """
    out = embeds.copy()
    out[mask] = rows.astype(embeds.dtype)
    return out


def add_rows(x: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[L, D], [L] bool, [M, D] -> [L, D]: ``rows`` added, in order, at the rows where mask is true (DeepStack).

    >>> add_rows(np.ones((3, 1)), np.array([True, False, True]), np.array([[1.], [2.]]))
    array([[2.],
           [1.],
           [3.]])
    """
    out = x.copy()
    out[mask] = out[mask] + rows.astype(x.dtype)
    return out


def window_ids(grid_thw: np.ndarray, merge: int, window_size: int, patch: int) -> np.ndarray:
    """[images, 3] grids -> [N] the attention window of each patch (Qwen2.5-VL's window attention).

    A window is ws × ws merged tokens, ws = window_size / merge / patch, laid over each frame's merged grid from the
    top-left corner (the bottom and right windows may be partial); windows are numbered frame by frame in raster
    order. Patches follow in merge-block order, 4 per merged token.

    >>> window_ids(np.array([[1, 4, 6]]), merge=2, window_size=2, patch=1)[::4]   # merged grid 2×3, 1×1 windows
    array([0, 1, 2, 3, 4, 5])
    >>> window_ids(np.array([[1, 4, 6]]), merge=2, window_size=4, patch=1)[::4]   # windows of 2×2 merged tokens
    array([0, 0, 1, 0, 0, 1])
    """
    ws = window_size // merge // patch
    out, offset = [], 0
    for t, gh, gw in np.asarray(grid_thw).tolist():
        lh, lw = gh // merge, gw // merge
        nh, nw = -(-lh // ws), -(-lw // ws)
        rows, cols = np.meshgrid(np.arange(lh), np.arange(lw), indexing="ij")
        unit = ((rows // ws) * nw + cols // ws).ravel()
        for frame in range(t):
            out.append(np.repeat(unit + offset + frame * nh * nw, merge * merge))
        offset += t * nh * nw
    return np.concatenate(out).astype(np.int64)
