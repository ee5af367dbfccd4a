"""K-quant quantizers (Q4_K, Q5_K, Q6_K) in NumPy: the ``gguf`` package dequantizes these but cannot write them.

A K-quant super-block holds 256 weights of one row, cut into sub-blocks; every sub-block has its own scale
(and, for Q4_K / Q5_K, its own minimum), and those per-sub-block numbers are themselves quantized against
one fp16 scale per super-block:

* Q4_K: 8 sub-blocks of 32, ``x ≈ d·sc_j·q − dmin·m_j``, q 4-bit, sc_j / m_j 6-bit packed in 12 bytes (144 B).
* Q5_K: the same with 5-bit q (the fifth bits in 32 more bytes; 176 B).
* Q6_K: 16 sub-blocks of 16, ``x ≈ d·sc_j·(q − 32)``, q 6-bit, sc_j int8 (210 B).

The search here is the plain one (each sub-block's range sets its scale and minimum); llama-quantize
searches a little further, so its files err slightly less. The byte layouts are ggml's; the tests check
every type round-trip through ``gguf.quants.dequantize``.
"""

from __future__ import annotations

import numpy as np

QK_K = 256


def _fp16(x: np.ndarray) -> np.ndarray:
    """Values rounded to float16 (as stored), back in float32."""
    return x.astype(np.float16).astype(np.float32)


def _pack_scales_mins(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """[n, 8] 6-bit scales and mins -> ggml's 12-byte layout (``get_scale_min_k4`` reads it back)."""
    sc, mn = sc.astype(np.uint8), mn.astype(np.uint8)
    out = np.empty((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    out[:, 4:8] = mn[:, :4] | ((mn[:, 4:] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    return out


def _scale_min_blocks(x: np.ndarray, levels: int) -> tuple[np.ndarray, ...]:
    """Per super-block fp16 d, dmin, 6-bit sc_j, m_j and codes q in [0, levels] for ``x ≈ d·sc_j·q − dmin·m_j``."""
    sub = x.reshape(-1, 8, 32)
    low = np.minimum(sub.min(axis=2), 0.0)  # the minimum is subtracted as a non-negative offset
    scale = (sub.max(axis=2) - low) / levels
    d = _fp16(scale.max(axis=1) / 63)
    dmin = _fp16(-low.min(axis=1) / 63)
    sc = np.clip(np.rint(np.divide(scale, d[:, None], out=np.zeros_like(scale), where=d[:, None] > 0)), 0, 63)
    mn = np.clip(np.rint(np.divide(-low, dmin[:, None], out=np.zeros_like(low), where=dmin[:, None] > 0)), 0, 63)
    step = (d[:, None] * sc)[:, :, None]
    offset = (dmin[:, None] * mn)[:, :, None]
    q = np.clip(np.rint(np.divide(sub + offset, step, out=np.zeros_like(sub), where=step > 0)), 0, levels)
    return d, dmin, sc, mn, q.astype(np.uint8).reshape(-1, QK_K)


def _nibbles(q: np.ndarray) -> np.ndarray:
    """[n, 256] 4-bit codes -> [n, 128] bytes: in each 64-value group, values 0-31 low nibbles, 32-63 high."""
    groups = (q & 0x0F).reshape(-1, 4, 2, 32)
    return (groups[:, :, 0] | (groups[:, :, 1] << 4)).reshape(-1, 128)


def quantize_q4_k(rows: np.ndarray) -> np.ndarray:
    """float rows [..., 256·m] -> Q4_K bytes [..., 144·m]."""
    x = np.asarray(rows, dtype=np.float32)
    d, dmin, sc, mn, q = _scale_min_blocks(x.reshape(-1, QK_K), 15)
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             dmin.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             _pack_scales_mins(sc, mn), _nibbles(q)], axis=1)
    return blocks.reshape(*x.shape[:-1], -1)


def quantize_q5_k(rows: np.ndarray) -> np.ndarray:
    """float rows [..., 256·m] -> Q5_K bytes [..., 176·m]."""
    x = np.asarray(rows, dtype=np.float32)
    d, dmin, sc, mn, q = _scale_min_blocks(x.reshape(-1, QK_K), 31)
    high = ((q >> 4) & 1).reshape(-1, 8, 32)  # bit s of byte k is the fifth bit of value 32·s + k
    qh = np.zeros((q.shape[0], 32), dtype=np.uint8)
    for s in range(8):
        qh |= high[:, s] << s
    blocks = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             dmin.astype(np.float16).view(np.uint8).reshape(-1, 2),
                             _pack_scales_mins(sc, mn), qh, _nibbles(q)], axis=1)
    return blocks.reshape(*x.shape[:-1], -1)


def quantize_q6_k(rows: np.ndarray) -> np.ndarray:
    """float rows [..., 256·m] -> Q6_K bytes [..., 210·m]."""
    x = np.asarray(rows, dtype=np.float32)
    sub = x.reshape(-1, 16, 16)
    idx = np.abs(sub).argmax(axis=2)
    peak = np.take_along_axis(sub, idx[:, :, None], axis=2)[:, :, 0]
    scale = peak / -32.0  # the largest magnitude lands on code 0 (q − 32 = −32), as in ggml
    d = _fp16(np.abs(scale).max(axis=1) / 127)
    sc = np.clip(np.rint(np.divide(scale, d[:, None], out=np.zeros_like(scale), where=d[:, None] > 0)), -128, 127)
    step = (d[:, None] * sc)[:, :, None]
    q = np.clip(np.rint(np.divide(sub, step, out=np.zeros_like(sub), where=step != 0)) + 32, 0, 63)
    q = q.astype(np.uint8).reshape(-1, 2, 128)  # two halves of 128 values
    low, high = q & 0x0F, q >> 4
    ql = (low[:, :, :64] | (low[:, :, 64:] << 4)).reshape(-1, 128)
    hh = high.reshape(-1, 2, 4, 32)
    qh = (hh[:, :, 0] | (hh[:, :, 1] << 2) | (hh[:, :, 2] << 4) | (hh[:, :, 3] << 6)).reshape(-1, 64)
    blocks = np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8),
                             d.astype(np.float16).view(np.uint8).reshape(-1, 2)], axis=1)
    return blocks.reshape(*x.shape[:-1], -1)


QUANTIZERS = {"Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}


def q4_k_fields(block: np.ndarray) -> dict[str, np.ndarray]:
    """One Q4_K super-block (144 bytes) taken apart: fp16 ``d`` and ``dmin``, the 8 six-bit ``scales`` and
    ``mins``, the 4-bit ``codes`` [8, 32], and the ``values`` they stand for, ``d·sc_j·q − dmin·m_j`` [8, 32].

    >>> x = np.linspace(-0.04, 0.05, 256, dtype=np.float32)
    >>> f = q4_k_fields(quantize_q4_k(x))
    >>> f["codes"].shape, int(f["codes"].max()) <= 15, float(np.abs(f["values"].ravel() - x).max()) < 0.002
    ((8, 32), True, True)
    """
    raw = np.asarray(block, dtype=np.uint8).reshape(-1)
    if raw.size != 144:
        raise ValueError(f"a Q4_K block is 144 bytes, got {raw.size}")
    d = float(raw[0:2].view(np.float16)[0])
    dmin = float(raw[2:4].view(np.float16)[0])
    packed = raw[4:16]
    scales = np.concatenate([packed[0:4] & 0x3F, (packed[8:12] & 0x0F) | ((packed[0:4] >> 6) << 4)])
    mins = np.concatenate([packed[4:8] & 0x3F, (packed[8:12] >> 4) | ((packed[4:8] >> 6) << 4)])
    groups = raw[16:144].reshape(4, 32)
    codes = np.stack([groups & 0x0F, groups >> 4], axis=1).reshape(8, 32)
    values = (np.float32(d) * scales[:, None].astype(np.float32) * codes.astype(np.float32)
              - np.float32(dmin) * mins[:, None].astype(np.float32))
    return {"d": np.float32(d), "dmin": np.float32(dmin), "scales": scales, "mins": mins, "codes": codes,
            "values": values}
