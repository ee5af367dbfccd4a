"""Hostile files: trace archives checked before they are read, paths confined to a folder, text made safe to print.

A trace is a zip of ``.npy`` members. Before any array is read, ``inspect_npz`` checks the member count, each
member's declared size and ``.npy`` header (numeric or bool dtype, shape consistent with the bytes), and the
total against a byte budget, so a 4 MB zip bomb is refused instead of inflating to gigabytes. ``check_meta``
validates ``__meta__`` against the versioned schema of its keys; ``CheckedStore`` refuses NaN/Inf in records
where the schema does not allow them (only masks and masked scores or logits may hold −∞).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import stat
import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tracer import Message, TracerError

MAX_MEMBERS = 200_000
"""Most arrays a trace file may hold (a full Qwen3-30B-A3B trace of one step has about 40,000)."""
MAX_META_BYTES = 256 * 1024**2
"""Largest ``__meta__`` (it is JSON text, stored as UTF-32)."""
BOMB_SIZE = 64 * 1024**2
BOMB_RATIO = 100
"""A member that expands past BOMB_SIZE may be compressed at most BOMB_RATIO:1 (a zip bomb is ~1000:1)."""
NUMERIC_KINDS = "biuf"
"""bool, signed and unsigned integers, floats: the only dtypes a record may have."""
NEG_INF_ALLOWED = ("*attn.mask", "*attn.masked_scores", "*.masked_logits")
"""Records where −∞ (masked positions, suppressed tokens) is part of the math; NaN and +∞ are never allowed."""
RECORD_NAME = re.compile(r"^[A-Za-z0-9_.]{1,200}$")
NPY_HEADER_LOCK = threading.Lock()
"""NumPy parses every ``.npy`` header with ``ast.literal_eval``, and CPython 3.11's AST constructor fails with a
SystemError when several threads parse at once (many app sessions opening traces): headers are parsed one at a
time. The lock guards no data."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")

META_SCHEMA: dict[int, dict[str, Any]] = {
    1: {
        "schema_version": int, "model": str, "backend": str, "dtype": str, "config": dict, "records": list,
        "token_ids": list, "token_labels": list, "generated_ids": list, "generated_labels": list,
        "stop_reason": (str, type(None)), "notes": list,
    },
}
"""Keys every ``__meta__`` of a schema version must have, with their JSON types (versioned with the trace schema)."""
RECORD_SCHEMA = {"name": str, "shape": list, "dtype": str, "op": str, "inputs": list}
RECORD_TEXTS = ("formula", "formula_text", "schema_shape", "en", "zh")
"""Texts of a record: strings when present; missing ones are filled in from this version's schema."""


def escape_controls(text: str) -> str:
    """Terminal control characters (ANSI escapes, bidi overrides, NUL…) written visibly, newlines and tabs kept.

    >>> escape_controls("ok\\x1b[31mred\\n")
    'ok\\\\x1b[31mred\\n'
    """
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def confine(root: Path, typed: str, what: str = "file") -> Path:
    """``typed`` (a name inside ``root``, or a path under it) resolved; refused when it leaves ``root``.

    No ``..``, no NUL, no symbolic link pointing out of the folder.
    """
    text = str(typed).strip()
    if not text or "\x00" in text or ".." in Path(text).parts:
        raise TracerError.of("safety.path_outside", value=escape_controls(text)[:200], what=what)
    candidate = Path(text).expanduser() if text.startswith("~") else Path(text)
    if not candidate.is_absolute():
        candidate = root / candidate
    base = root.resolve()
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError):
        raise TracerError.of("safety.path_outside", value=Path(text).name, what=what) from None
    if not resolved.is_relative_to(base):
        raise TracerError.of("safety.path_outside", value=Path(text).name, what=what)
    return resolved


def regular_file(path: Path, root: Path | None = None) -> bool:
    """True for a regular file (not a FIFO, device or folder), inside ``root`` once links are followed."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    return root is None or path.resolve().is_relative_to(root.resolve())


def _entry_count(fp: BinaryIO) -> int | None:
    """Entries the zip's end record declares, read before ``zipfile`` builds one object per entry."""
    end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]  # stable since Python 2; returns None if no zip
    return None if end is None else int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]


def inspect_npz(source: Path | BinaryIO, label: str, max_bytes: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each member's shape and dtype, from the zip directory and ``.npy`` headers only; a TracerError for a file
    that is not a plain trace archive or would take more than ``max_bytes`` once read."""
    from tracer.safety.budget import human

    opened = open(source, "rb") if isinstance(source, Path) else None
    fp = opened or source
    try:
        fp.seek(0)
        count = _entry_count(fp)
        if count is None:
            raise TracerError.of("safety.not_npz", label=label)
        if count > MAX_MEMBERS:
            raise TracerError.of("safety.too_many_members", label=label, count=count, limit=MAX_MEMBERS)
        fp.seek(0)
        try:
            with zipfile.ZipFile(fp) as z:
                infos = z.infolist()
                headers = {}
                total = 0
                for info in infos:
                    name = info.filename.removesuffix(".npy")
                    if not info.filename.endswith(".npy") or info.file_size < 0:
                        raise TracerError.of("safety.bad_member", label=label, member=escape_controls(name)[:80])
                    total += info.file_size
                    if info.file_size > BOMB_SIZE and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
                        raise TracerError.of("safety.zip_bomb", label=label, member=escape_controls(name)[:80],
                                             size=human(info.file_size), packed=human(info.compress_size))
                    if total > max_bytes:
                        raise TracerError.of("safety.too_big", label=label, size=human(total),
                                             budget=human(max_bytes))
                    with z.open(info) as member:
                        shape, dtype = _npy_header(member, label, name)
                        header_size = member.tell()
                    nbytes = math.prod(shape) * dtype.itemsize
                    if nbytes + header_size > info.file_size:
                        raise TracerError.of("safety.bad_member", label=label, member=escape_controls(name)[:80])
                    if name == "__meta__":
                        utf8 = dtype == np.uint8 and len(shape) == 1  # schema v2: UTF-8 JSON bytes
                        if not (utf8 or (dtype.kind == "U" and shape == ())) or nbytes > MAX_META_BYTES:
                            raise TracerError.of("safety.bad_meta_entry", label=label)
                    elif dtype.kind not in NUMERIC_KINDS or dtype.hasobject:
                        raise TracerError.of("safety.bad_dtype", label=label, member=escape_controls(name)[:80],
                                             dtype=str(dtype)[:40])
                    headers[name] = (shape, dtype.str)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise TracerError.of("errors.not_npz_kind", label=label, kind=type(exc).__name__) from None
        return headers
    finally:
        if opened is not None:
            opened.close()


def _npy_header(member: BinaryIO, label: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, parsed as a literal (never evaluated)."""
    fmt = np.lib.format
    try:
        major, _ = fmt.read_magic(member)
        with NPY_HEADER_LOCK:
            if major == 1:
                shape, fortran, dtype = fmt.read_array_header_1_0(member)
            elif major in (2, 3):
                shape, fortran, dtype = fmt.read_array_header_2_0(member)
            else:
                raise ValueError("unknown .npy version")
    except (ValueError, SyntaxError, TypeError, OverflowError, EOFError) as exc:
        raise TracerError.of("errors.bad_member_kind", label=label, member=escape_controls(name)[:80],
                             kind=type(exc).__name__) from None
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise TracerError.of("safety.bad_member", label=label, member=escape_controls(name)[:80])
    return tuple(shape), np.dtype(dtype)


def check_meta(meta: Any, label: str, version: int, max_bytes: int | None = None) -> None:
    """``__meta__`` against its schema version: every key present with its type, records well formed, their
    storage notes consistent (a rebuilt record only from records before it), and the bytes all records take
    once read within ``max_bytes``."""
    schema = META_SCHEMA.get(version, META_SCHEMA[max(META_SCHEMA)])
    for key, kind in schema.items():
        if key not in meta:
            raise TracerError.of("safety.meta_missing", label=label, key=key)
        if not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool)):
            names = kind if isinstance(kind, tuple) else (kind,)
            raise TracerError.of("safety.meta_type", label=label, key=key,
                                 kind=" | ".join(k.__name__ for k in names))  # a type union, as Python writes it
    for key in ("token_ids", "generated_ids"):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in meta[key]):
            raise TracerError.of("safety.meta_type", label=label, key=key, kind=Message("errors.kind_int_list"))
    for key in ("token_labels", "generated_labels", "notes"):
        if not all(isinstance(x, str) for x in meta[key]):
            raise TracerError.of("safety.meta_type", label=label, key=key, kind=Message("errors.kind_str_list"))
    for n, record in enumerate(meta["records"]):
        if not isinstance(record, dict):
            raise TracerError.of("safety.meta_type", label=label, key=f"records[{n}]", kind="dict")
        for key, kind in RECORD_SCHEMA.items():
            if not isinstance(record.get(key), kind):
                raise TracerError.of("safety.meta_type", label=label, key=f"records[{n}].{key}",
                                     kind=kind.__name__)
        if not RECORD_NAME.match(record["name"]):
            raise TracerError.of("safety.meta_type", label=label, key=f"records[{n}].name",
                                 kind=Message("errors.kind_record_name"))
        for key in RECORD_TEXTS:
            if key in record and not isinstance(record[key], str):
                raise TracerError.of("safety.meta_type", label=label, key=f"records[{n}].{key}", kind="str")
            if key not in record:
                record[key] = _schema_text(record["name"], record["op"], key)
    seen: set[str] = set()
    decoded = 0
    for n, record in enumerate(meta["records"]):
        decoded += _check_record(record, n, label, seen)
        seen.add(record["name"])
    if max_bytes is not None and decoded > max_bytes:
        from tracer.safety.budget import human

        raise TracerError.of("safety.too_big", label=label, size=human(decoded), budget=human(max_bytes))
    from tracer.sources.config import Qwen3Config

    try:
        Qwen3Config(**meta["config"])
    except TypeError:
        raise TracerError.of("safety.meta_type", label=label, key="config",
                             kind=Message("errors.kind_qwen3_config")) from None
    except TracerError as exc:
        raise TracerError.of("errors.trace_config", label=label, detail=exc) from None


def _schema_text(name: str, op: str, key: str) -> str:
    """A record's text from this version's schema (its op's formula, its entry's shape and explanations)."""
    from tracer.traces.schema import OPS, entry_for

    if key in ("formula", "formula_text"):
        found = OPS.get(op)
        return "" if found is None else (found.latex if key == "formula" else found.text)
    try:
        entry = entry_for(name)
    except KeyError:
        return ""
    return {"schema_shape": entry.shape, "en": entry.en, "zh": entry.zh}[key]


def _check_record(record: dict[str, Any], n: int, label: str, earlier: set[str]) -> int:
    """One record's shape, dtype and storage note; the bytes its values take once read."""
    from tracer.traces.storage import ARITY, STORE_DTYPES

    def bad(key: str, kind: str) -> TracerError:
        return TracerError.of("safety.meta_type", label=label, key=f"records[{n}].{key}", kind=kind)

    shape = record["shape"]
    if len(shape) > 8 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape):
        raise bad("shape", "list of at most 8 sizes")
    try:
        dtype = np.dtype(record["dtype"])
    except TypeError:
        raise bad("dtype", "numeric dtype") from None
    if dtype.kind not in NUMERIC_KINDS:
        raise bad("dtype", "numeric dtype")
    if not all(isinstance(i, str) for i in record["inputs"]):
        raise bad("inputs", "list of record names")
    storage = record.get("storage", {})
    if not isinstance(storage, dict):
        raise bad("storage", "dict")
    kind = storage.get("kind")
    if kind == "rebuilt":
        op = record["op"]
        if op not in ARITY or len(record["inputs"]) != ARITY[op] or not set(record["inputs"]) <= earlier:
            raise bad("storage", "rebuild from records before it")
        fill = storage.get("fill", 0.0)
        if op == "causal_mask" and (len(shape) != 2 or not isinstance(fill, (int, float)) or math.isnan(fill)):
            raise bad("storage.fill", "number")
    elif kind == "visible":
        if storage.get("mask") not in earlier:
            raise bad("storage.mask", "record before it")
    elif kind is not None:
        raise bad("storage.kind", "'rebuilt' or 'visible'")
    if "dtype" in storage:
        half = storage.get("shape")
        ok = (isinstance(half, list) and all(isinstance(d, int) and d >= 0 for d in half)
              and (half == shape if kind is None else math.prod(half) <= math.prod(shape)))
        if storage["dtype"] not in STORE_DTYPES or not ok:
            raise bad("storage.dtype", "half-precision note")
    return math.prod(shape) * dtype.itemsize


def nonfinite_problem(name: str, value: np.ndarray) -> str | None:
    """Why a record's values are not allowed (NaN anywhere, ±∞ outside masks), or None when they are fine."""
    if value.dtype.kind != "f" or value.size == 0:
        return None
    if np.isfinite(value).all():
        return None
    if np.isnan(value).any():
        return "NaN"
    if np.isposinf(value).any() or not any(fnmatch.fnmatchcase(name, g) for g in NEG_INF_ALLOWED):
        return "Inf"
    return None


class CheckedStore(Mapping[str, np.ndarray]):
    """The arrays of an opened trace file, each checked for shape, dtype and NaN/Inf as it is read."""

    def __init__(self, npz: Any, headers: dict[str, tuple[tuple[int, ...], str]], records: dict[str, dict[str, Any]],
                 label: str, allow_nonfinite: bool):
        self._npz = npz
        self._headers = headers
        self._label = label
        self._allow_nonfinite = allow_nonfinite
        self._records = records
        for name, info in records.items():
            storage = info.get("storage", {})
            if storage.get("kind") is not None or name not in headers:
                continue
            from tracer.traces.storage import LOW_BYTES

            members = [name, name + LOW_BYTES] if "dtype" in storage else [name]
            want = [math.prod(info["shape"])] if "dtype" in storage else list(info["shape"])
            for member in members:  # half precision: the high and the low bytes, one plane each
                shape = list(headers.get(member, ((), ""))[0])
                if shape != want:
                    raise TracerError.of("safety.shape_mismatch", label=label, name=member, shape=shape,
                                         meta=want)

    def check_values(self, name: str, value: np.ndarray) -> None:
        """A record as read (decoded, rebuilt): the shape and dtype its metadata gives; NaN/Inf only where allowed."""
        info = self._records[name]
        if list(value.shape) != list(info["shape"]) or value.dtype != np.dtype(info["dtype"]):
            raise TracerError.of("safety.shape_mismatch", label=self._label, name=name, shape=list(value.shape),
                                 meta=info["shape"])
        if not self._allow_nonfinite:
            problem = nonfinite_problem(name, value)
            if problem:
                raise TracerError.of("safety.record_nonfinite", label=self._label, name=name, what=problem)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            with NPY_HEADER_LOCK:  # the member's .npy header is parsed as it is read
                value = self._npz[name]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise TracerError.of("errors.record_damaged_kind", label=self._label, name=name,
                                 kind=type(exc).__name__) from None
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers)

    def __len__(self) -> int:
        return len(self._headers)

    def close(self) -> None:
        self._npz.close()


def read_json_text(raw: str, label: str) -> Any:
    """JSON text, with a one-line error for anything that is not JSON (too deep counts as not JSON)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise TracerError.of("errors.invalid_json", path=label, kind=type(exc).__name__) from None
