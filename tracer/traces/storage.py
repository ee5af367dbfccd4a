"""How a record is kept in a trace file: as its numbers, as the exact function of other records that made it
(rebuilt when read), or with the zeros a mask forces left out — at full precision, or in half precision for
display (``--store-dtype``).

A record is stored as a function only when, at write time, rebuilding it from the other records gives back
the very same bits; anything else is stored as numbers. So the file loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tracer import TracerError
from tracer.engine import ops

STORE_DTYPES = ("float16", "bfloat16")
"""Half-precision storage for display; parity verdicts (``tracer compare``) refuse such traces."""

Rebuild = Callable[[Sequence[np.ndarray], dict[str, Any]], np.ndarray]

REBUILD: dict[str, Rebuild] = {
    # op -> how the record follows from its recorded inputs (and its own shape / dtype / fill in the meta)
    "add": lambda xs, info: xs[0] + xs[1],
    "apply_rope": lambda xs, info: ops.apply_rope(xs[0], xs[1], xs[2]),
    "kv_append": lambda xs, info: np.concatenate([xs[0], xs[1]], axis=1),
    "scatter_gates": lambda xs, info: ops.scatter_gates(xs[0], xs[1], info["shape"][1]),
    "one_hot": lambda xs, info: ops.one_hot(xs[0], info["shape"][1], np.dtype(info["dtype"])),
    "causal_mask": lambda xs, info: ops.causal_mask(info["shape"][0], info["shape"][1], info["storage"]["fill"],
                                                     np.dtype(info["dtype"])),
    "last_row": lambda xs, info: xs[0][-1],
}
ARITY = {"add": 2, "apply_rope": 3, "kv_append": 2, "scatter_gates": 2, "one_hot": 1, "causal_mask": 0,
         "last_row": 1}


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float -> uint16: the upper half of each float32, rounded to nearest even (what bfloat16 stores).

    >>> to_bfloat16_bits(np.array([1.0, -2.5, 1 + 2**-8], dtype=np.float32))
    array([16256, 49184, 16256], dtype=uint16)
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """uint16 -> float32, exactly (bfloat16 is the upper half of a float32).

    >>> from_bfloat16_bits(np.array([16256, 49184], dtype=np.uint16))
    array([ 1. , -2.5], dtype=float32)
    """
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def byte_planes(halves: np.ndarray) -> np.ndarray:
    """[...] 16-bit -> [2, n] uint8: all low bytes, then all high bytes (sign and exponent: these compress).

    >>> byte_planes(np.array([0x3F80, 0x4000], dtype="<u2"))
    array([[128,   0],
           [ 63,  64]], dtype=uint8)
    """
    return np.ascontiguousarray(np.ascontiguousarray(halves, dtype="<u2").reshape(-1).view(np.uint8).reshape(-1, 2).T)


def from_byte_planes(planes: np.ndarray) -> np.ndarray:
    """[2, n] uint8 -> [n] 16-bit words (inverse of ``byte_planes``).

    >>> from_byte_planes(byte_planes(np.array([0x3F80, 0x4000], dtype="<u2")))
    array([16256, 16384], dtype=uint16)
    """
    return np.ascontiguousarray(planes.T).view("<u2").reshape(-1).astype(np.uint16)


LOW_BYTES = ".lo"
"""Suffix of the zip member holding a half-precision record's low bytes (its high bytes are under its name)."""


def encode_numbers(value: np.ndarray, store_dtype: str | None, name: str = "") -> tuple[np.ndarray, dict[str, Any]]:
    """The array to write and its storage note: as computed ({}), or in half precision as byte planes
    (``{"dtype": "float16" | "bfloat16", "shape": [...]}``): the writer deflates the high bytes (sign and
    exponent, which compress) and stores the low bytes (mantissa bits, which do not) as they are.

    A finite value that float16 cannot hold (beyond ±65504) is refused: it would be written as ±inf."""
    if store_dtype is None or not np.issubdtype(value.dtype, np.floating) or value.dtype.itemsize <= 2:
        return value, {}
    if store_dtype == "bfloat16":
        halves = to_bfloat16_bits(value)
    else:
        with np.errstate(over="ignore"):  # the most negative float (a mask's −∞ stand-in) becomes −∞
            narrow = value.astype(np.float16)
        lost = np.isinf(narrow) & np.isfinite(value) & (value != np.finfo(value.dtype).min)
        if lost.any():
            raise TracerError.of("storage.err_float16_overflow", name=name, value=float(value[lost].flat[0]))
        halves = narrow.view(np.uint16)
    return byte_planes(halves), {"dtype": store_dtype, "shape": list(value.shape)}


def decode_numbers(stored: np.ndarray | tuple[np.ndarray, np.ndarray], info: dict[str, Any]) -> np.ndarray:
    """The record's values from what was written — the array, or for half precision its (low, high) byte
    planes — widened back to the record's dtype."""
    storage = info.get("storage", {})
    half = storage.get("dtype")
    if half is None:
        return stored  # type: ignore[return-value]
    words = from_byte_planes(np.stack(stored)).reshape(storage["shape"])
    values = from_bfloat16_bits(words) if half == "bfloat16" else words.view(np.float16)
    return np.asarray(values.astype(info["dtype"]))  # a 0-d record stays an array (numpy ops give scalars)


def rebuildable(value: np.ndarray, info: dict[str, Any], inputs: Sequence[np.ndarray]) -> bool:
    """Whether rebuilding the record from ``inputs`` gives back exactly ``value`` (same dtype, shape, bits)."""
    op = info["op"]
    if op not in REBUILD or len(inputs) != ARITY[op]:
        return False
    try:
        again = REBUILD[op](inputs, info)
    except (ValueError, IndexError, TypeError):
        return False
    return again.dtype == value.dtype and again.shape == value.shape and np.array_equal(again, value)


def mask_fill(value: np.ndarray) -> float | None:
    """The one non-zero value of an additive mask (None when it has none or several)."""
    fills = np.unique(value[value != 0])
    return float(fills[0]) if fills.size == 1 else None


def visible_only(value: np.ndarray, mask: np.ndarray) -> bool:
    """Whether every entry the mask hides is exactly 0 (attention weights of future keys)."""
    return value.shape[-2:] == mask.shape and not np.any(value[..., mask != 0])


def rebuild(info: dict[str, Any], inputs: Sequence[np.ndarray]) -> np.ndarray:
    """A record stored as a function, computed from its inputs."""
    return REBUILD[info["op"]](inputs, info)


def scatter_visible(stored: np.ndarray | tuple[np.ndarray, np.ndarray], mask: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """A record stored without its masked zeros, put back in its full shape."""
    out = np.zeros(info["shape"], dtype=info["dtype"])
    out[..., mask == 0] = decode_numbers(stored, info)
    return out
