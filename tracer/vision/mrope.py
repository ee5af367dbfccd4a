"""M-RoPE: three position ids per token (time, height, width) and the interleaved frequency assignment.

Seed 002: text tokens get (p, p, p); an image's tokens get (s, s + row, s + col) on its merged grid, and
the text after it continues after the image's largest id. Qwen3-VL interleaves the frequencies:
pair i of the head turns with the h id when i % 3 == 1, the w id when i % 3 == 2 (within the sections),
else with the t id.
"""

from __future__ import annotations

import numpy as np


def rope_index(ids: np.ndarray, image_mask: np.ndarray, grids: list[tuple[int, int, int]], merge: int
               ) -> tuple[np.ndarray, int]:
    """Token ids [L], image-token mask [L], each image's patch grid (t, gh, gw) -> position ids [3, L] and
    the rope delta (largest id + 1 − L, which later tokens add to their index).

    Each run of image tokens is the next image; its ids start at the current position s and are
    (s + t, s + row, s + col) over the merged grid (t, gh/m, gw/m) in raster order; afterwards
    s grows by max(gh, gw)/m.

    >>> ids = np.array([5, 9, 1, 1, 1, 1, 1, 1, 9, 5])
    >>> pos, delta = rope_index(ids, ids == 1, [(1, 4, 6)], merge=2)
    >>> pos
    array([[0, 1, 2, 2, 2, 2, 2, 2, 5, 6],
           [0, 1, 2, 2, 2, 3, 3, 3, 5, 6],
           [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]])
    >>> delta
    -3
    """
    length = len(ids)
    pos = np.zeros((3, length), dtype=np.int64)
    cur, i, image = 0, 0, 0
    while i < length:
        j = i
        while j < length and image_mask[j] == image_mask[i]:
            j += 1
        if not image_mask[i]:
            pos[:, i:j] = cur + np.arange(j - i)
            cur += j - i
        else:
            t, gh, gw = grids[image]
            image += 1
            tt, hh, ww = np.meshgrid(np.arange(t), np.arange(gh // merge), np.arange(gw // merge), indexing="ij")
            pos[:, i:j] = np.stack([tt.ravel(), hh.ravel(), ww.ravel()]) + cur
            cur += max(gh, gw) // merge
        i = j
    return pos, int(pos.max()) + 1 - length if length else 0


def axis_of_frequency(half_dim: int, section: tuple[int, ...]) -> np.ndarray:
    """-> [Dh/2] in {0, 1, 2}: which position axis (t, h, w) turns each frequency pair, interleaved.

    >>> axis_of_frequency(8, (4, 2, 2))
    array([0, 1, 2, 0, 1, 2, 0, 0])
    """
    axis = np.zeros(half_dim, dtype=np.int64)
    for a, offset in ((1, 1), (2, 2)):
        axis[offset:section[a] * 3:3] = a
    return axis


def mrope_tables(position_ids: np.ndarray, inv_freq: np.ndarray, section: tuple[int, ...],
                 dtype: np.dtype = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """[3, L] ids, [Dh/2] frequencies -> cos, sin [L, Dh]. Angle φ[l, i] = pos[axis(i), l] · ω_i, laid out as
    cat(φ, φ). When the three ids are equal (text) this is ordinary 1-D RoPE.

    Angles are computed as transformers does: positions and ω in float32, their product in float32.

    >>> cos, sin = mrope_tables(np.array([[0, 1], [0, 5], [0, 7]]), np.ones(3), (1, 1, 1))
    >>> np.arccos(cos[1, :3]).round(3)    # pair 0 turns by t = 1, pair 1 by h = 5, pair 2 by w = 7
    array([1.   , 1.283, 0.717], dtype=float32)
    """
    axis = axis_of_frequency(len(inv_freq), section)
    chosen = position_ids[axis].T.astype(np.float32)  # (L, Dh/2): each pair's own axis
    angles = chosen * np.asarray(inv_freq, dtype=np.float32)[None, :]
    full = np.concatenate([angles, angles], axis=-1)
    return np.cos(full).astype(dtype), np.sin(full).astype(dtype)
