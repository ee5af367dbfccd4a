"""Streaming weights from memory-mapped files: after a tensor is converted, its file pages leave the process.

Reading a memory-mapped tensor makes its file pages resident in this process (they count in its RSS) until
the kernel needs the memory. A streamed load converts one tensor, then tells the kernel with
``madvise(MADV_DONTNEED)`` that this process is done with those pages; the bytes stay in the page cache,
so reading them again is cheap, but the process's resident size stays at about one layer.
"""

from __future__ import annotations

import mmap

import numpy as np


def release_pages(mapped: np.ndarray, start: int, end: int) -> None:
    """Drop this process's mapping of bytes [start, end) of a ``np.memmap`` (no-op where unsupported)."""
    base = getattr(mapped, "_mmap", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if base is None or advice is None or not hasattr(base, "madvise") or end <= start:
        return
    first = start // mmap.PAGESIZE * mmap.PAGESIZE
    base.madvise(advice, first, min(end, len(base)) - first)
