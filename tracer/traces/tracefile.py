"""Trace files: a ``.npz`` (zip of ``.npy``) with ``__meta__``, a JSON string (see docs/trace-schema.md), and
one array per record — except records kept as the exact function of others, which ``load_trace`` rebuilds.

``numpy.load(path, allow_pickle=False)`` opens them; ``load_trace`` adds checks, the record order and the
rebuilt records.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

import tracer
from tracer import TracerError, os_reason
from tracer.engine.recorder import Recorder
from tracer.traces.schema import OPS, SCHEMA_VERSION, entry_for
from tracer.traces.storage import (ARITY, LOW_BYTES, STORE_DTYPES, decode_numbers, encode_numbers, mask_fill, rebuild, rebuildable,
                            scatter_visible, visible_only)

META_KEY = "__meta__"


def record_meta(rec: Recorder) -> list[dict[str, Any]]:
    """Per-record metadata, in recording order: shape, dtype, op, formula, inputs, explanations."""
    out = []
    for name, value in rec.records.items():
        entry = entry_for(name)
        op = rec.ops.get(name, entry.op)
        out.append({
            "name": name, "shape": list(value.shape), "dtype": str(value.dtype), "op": op,
            "formula": OPS[op].latex, "formula_text": OPS[op].text, "inputs": rec.inputs[name],
            "schema_shape": entry.shape, "en": entry.en, "zh": entry.zh, "derived": name in rec.derived,
        })
    return out


def library_versions() -> dict[str, str]:
    return {"qwen3-tracer": tracer.__version__, "numpy": np.__version__, "python": platform.python_version()}


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any work, when a trace could not be written to ``path``."""
    out = Path(path)
    if out.is_dir():
        raise TracerError.of("errors.out_is_dir", path=out, example=out / "trace.npz")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise TracerError.of("errors.no_parent_folder", path=out, folder=parent)
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise TracerError.of("errors.permission_denied", path=out)
    if out.suffix != ".npz":
        raise TracerError.of("errors.out_not_npz", path=out)
    return out


def save_trace(path: str | os.PathLike[str], trace: Trace, store_dtype: str | None = None) -> Path:
    """Write a trace atomically (a temporary file renamed into place, so no half-written trace), one record at
    a time (memory while saving: the trace plus one record).

    Records that are exact functions of other records are kept as such (see ``tracer.traces.storage``);
    ``store_dtype`` (float16 or bfloat16) keeps the numbers in half precision, for display.
    """
    out = check_writable(path)
    if store_dtype is not None and store_dtype not in STORE_DTYPES:
        raise TracerError.of("errors.must_be_one_of", name="--store-dtype", choices=", ".join(STORE_DTYPES),
                                     value=store_dtype)
    records_meta = []
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        # members are stored as they are, except half-precision byte planes: deflated (fast level)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=1) as zf:
            for name in trace.names:
                info = {k: v for k, v in trace.info[name].items() if k != "storage"}
                value = trace[name]
                storage = _storage_of(trace, name, info, value)
                if storage.get("kind") != "rebuilt":
                    written = value[..., trace[storage["mask"]] == 0] if storage.get("kind") == "visible" else value
                    written, half = encode_numbers(written, store_dtype, name)
                    storage.update(half)
                    if half:  # high bytes deflated (a name: the archive's default), low bytes stored
                        _write_member(zf, f"{name}.npy", written[1])
                        _write_member(zf, zipfile.ZipInfo(f"{name}{LOW_BYTES}.npy"), written[0])
                    else:
                        _write_member(zf, zipfile.ZipInfo(f"{name}.npy"), written)
                if storage:
                    info["storage"] = storage
                records_meta.append(info)
            meta = {**trace.meta, "records": records_meta, "store_dtype": store_dtype}
            _write_member(zf, f"{META_KEY}.npy", meta_bytes(meta))  # deflated: names and formulas repeat
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TracerError.of("sources.cannot_write", path=out, detail=os_reason(exc)) from None
    except BaseException:  # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI): no temporary file stays
        tmp.unlink(missing_ok=True)
        raise
    return out


def meta_bytes(meta: dict[str, Any]) -> np.ndarray:
    """The meta as UTF-8 JSON bytes (a NumPy string would take 4 bytes a character)."""
    return np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def meta_text(stored: np.ndarray) -> str:
    """The meta's JSON text: UTF-8 bytes (schema v2), or a NumPy string (v1 files)."""
    return bytes(stored).decode("utf-8") if stored.dtype == np.uint8 else str(stored)


def _write_member(zf: zipfile.ZipFile, target: str | zipfile.ZipInfo, array: np.ndarray) -> None:
    """One ``.npy`` member, streamed into the zip (a ZipInfo target is stored, a name deflated)."""
    with zf.open(target, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _storage_of(trace: Trace, name: str, info: dict[str, Any], value: np.ndarray) -> dict[str, Any]:
    """How one record is written: {} (its numbers), rebuilt from its inputs, or without its masked zeros."""
    if info["op"] == "causal_mask":
        fill = mask_fill(value)
        if fill is not None and rebuildable(value, {**info, "storage": {"fill": fill}}, []):
            return {"kind": "rebuilt", "fill": fill}
        return {}
    inputs = info.get("inputs", [])
    if info["op"] in ARITY and inputs and all(n in trace for n in inputs):
        if rebuildable(value, info, [trace[n] for n in inputs]):
            return {"kind": "rebuilt"}
    if name.endswith("attn.probs"):
        mask_name = name.removesuffix("probs") + "mask"
        if mask_name in trace and visible_only(value, trace[mask_name]):
            return {"kind": "visible", "mask": mask_name}
    return {}


class Trace:
    """A trace: records by name, in recording order, and its meta.

    In memory straight from a run (``path`` None), or opened from a file (records read lazily). Rebuilt
    records are kept once computed, up to ``REBUILT_CACHE_BYTES`` (the residual stream of layer i is rebuilt
    from layer i − 1's), oldest dropped first; the app shares a trace between sessions, hence the lock.
    """

    REBUILT_CACHE_BYTES = 256 << 20

    def __init__(self, path: Path | None, store: Mapping[str, np.ndarray], meta: dict[str, Any]):
        self.path = path
        self._store = store
        self.meta = meta
        self.info = {r["name"]: r for r in meta["records"]}
        self.name: str | None = path.name if path is not None else None
        self.check_values: Callable[[str, np.ndarray], None] | None = None
        self._rebuilt: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def in_memory(cls, records: Mapping[str, np.ndarray], meta: dict[str, Any]) -> Trace:
        """A trace of records just computed, with the file-level meta (schema and library versions) added."""
        full = {"schema_version": SCHEMA_VERSION, **meta, "versions": library_versions()}
        return cls(None, records, full)

    @property
    def label(self) -> str:
        """The file name, or the model's name for a trace that was never saved."""
        return self.name or str(self.meta.get("model", "trace"))

    @property
    def names(self) -> list[str]:
        return list(self.info)

    def __getitem__(self, name: str) -> np.ndarray:
        """A record's values: read from the file (widened from half precision, masked zeros put back) or
        rebuilt from the records it is an exact function of."""
        info = self.info[name]
        kind = info.get("storage", {}).get("kind")
        try:
            if kind == "rebuilt":
                value = self._rebuild(name)
            elif kind == "visible":
                value = scatter_visible(self._stored(name), self[info["storage"]["mask"]], info)
            else:
                value = decode_numbers(self._stored(name), info)
        except (ValueError, IndexError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            if self.check_values is None:
                raise
            raise TracerError.of("errors.record_damaged_detail", label=self.label, name=name,
                                     detail=f"{type(exc).__name__}: {exc}") from None
        if list(value.shape) != list(info["shape"]) or str(value.dtype) != info["dtype"]:
            raise TracerError.of("errors.record_shape", label=self.label, name=name, shape=list(value.shape),
                                 dtype=value.dtype, meta_shape=info["shape"], meta_dtype=info["dtype"])
        if self.check_values is not None:
            self.check_values(name, value)  # a file's records: NaN/Inf only where the schema allows them
        if value.flags.writeable:
            value.flags.writeable = False
        return value

    def _rebuild(self, name: str) -> np.ndarray:
        """A rebuilt record, its rebuilt inputs first — without recursion: a cache record of decode step s is
        rebuilt from step s − 1's, so chains are as long as the generation."""
        made: dict[str, np.ndarray] = {}
        todo = [name]
        while todo:
            current = todo[-1]
            if current in made:
                todo.pop()
                continue
            with self._lock:
                kept = self._rebuilt.get(current)
            if kept is not None:
                made[current] = kept
                continue
            info = self.info[current]
            pending = [n for n in info["inputs"] if n not in made
                       and self.info[n].get("storage", {}).get("kind") == "rebuilt"]
            if pending:
                todo.extend(pending)
                continue
            try:
                value = rebuild(info, [made[n] if n in made else self[n] for n in info["inputs"]])
            except (ValueError, IndexError, TypeError) as exc:
                raise TracerError.of("errors.record_rebuild", label=self.label, name=current, detail=exc) from None
            value.flags.writeable = False
            self._keep(current, value)
            made[current] = value
        return made[name]

    def _keep(self, name: str, value: np.ndarray) -> None:
        with self._lock:
            self._rebuilt[name] = value
            while sum(v.nbytes for v in self._rebuilt.values()) > self.REBUILT_CACHE_BYTES and len(self._rebuilt) > 1:
                del self._rebuilt[next(iter(self._rebuilt))]

    def _stored(self, name: str) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """What the file holds for a record: its array, or a half-precision record's (low, high) byte planes."""
        if "dtype" in self.info[name].get("storage", {}):
            return self._store[name + LOW_BYTES], self._store[name]
        return self._store[name]

    @property
    def half_precision(self) -> str | None:
        """The half-precision dtype the numbers were stored in (``--store-dtype``), or None."""
        return self.meta.get("store_dtype")

    def __contains__(self, name: object) -> bool:
        return name in self.info

    def __iter__(self) -> Iterator[str]:
        return iter(self.info)

    def __len__(self) -> int:
        return len(self.info)

    def close(self) -> None:
        if hasattr(self._store, "close"):
            self._store.close()


def _storage_kind(record: dict[str, Any]) -> Any:
    storage = record.get("storage")
    return storage.get("kind") if isinstance(storage, dict) else None


def _half(record: dict[str, Any]) -> bool:
    storage = record.get("storage")
    return isinstance(storage, dict) and "dtype" in storage


def load_trace(source: str | os.PathLike[str] | BinaryIO, name: str | None = None, *, max_bytes: int | None = None,
               allow_nonfinite: bool = False) -> Trace:
    """Open a trace file (a path, or an uploaded file's bytes with its ``name``), with a one-line TracerError
    for anything that is not a readable trace.

    The zip directory and ``.npy`` headers are checked before any array is read (``max_bytes``: the most the
    records may take once read; default the memory budget); records with NaN/Inf where the schema does not
    allow them are refused when read, unless ``allow_nonfinite`` (``tracer compare`` reports them instead).
    """
    from tracer.safety.budget import default_budget
    from tracer.safety.safefiles import (NPY_HEADER_LOCK, CheckedStore, check_meta, escape_controls, inspect_npz,
                                  read_json_text, regular_file)

    if isinstance(source, (str, os.PathLike)):
        p: Path | None = Path(source)
        label = escape_controls(str(p))
        if not p.exists():
            raise TracerError.of("errors.trace_missing", label=label)
        if not regular_file(p):
            raise TracerError.of("safety.not_regular_trace", label=label)
    else:
        p, label = None, escape_controls(name or "uploaded file")
    headers = inspect_npz(p if p is not None else source, label, default_budget() if max_bytes is None else max_bytes)
    if META_KEY not in headers:
        raise TracerError.of("errors.no_meta", label=label, key=META_KEY)
    try:
        if p is None:
            source.seek(0)  # type: ignore[union-attr]
        npz = np.load(p if p is not None else source, allow_pickle=False)
        with NPY_HEADER_LOCK:
            text = meta_text(npz[META_KEY])
        meta = read_json_text(text, f"{label}: {META_KEY}")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise TracerError.of("errors.trace_unreadable", label=label, detail=exc) from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or not isinstance(meta.get("records"), list):
        raise TracerError.of("errors.meta_not_ours", label=label, key=META_KEY)
    if version > SCHEMA_VERSION:
        raise TracerError.of("errors.schema_newer", label=label, version=version, ours=SCHEMA_VERSION)
    records = [r if isinstance(r, dict) else {} for r in meta["records"]]
    missing = [str(r.get("name")) for r in records if _storage_kind(r) != "rebuilt" and (
               r.get("name") not in headers or r.get("name") == META_KEY
               or (_half(r) and f"{r.get('name')}{LOW_BYTES}" not in headers))]
    if missing:
        raise TracerError.of("errors.records_missing", label=label, first=escape_controls(missing[0])[:80])
    check_meta(meta, label, version, default_budget() if max_bytes is None else max_bytes)
    store = CheckedStore(npz, headers, {r["name"]: r for r in meta["records"]}, label, allow_nonfinite)
    trace = Trace(p, store, meta)
    trace.check_values = store.check_values
    if p is None and name:
        trace.name = Path(name).name
    return trace
