"""Trace files: one ``.npz`` array per record plus ``__meta__``, a JSON string (see docs/trace-schema.md).

``numpy.load(path, allow_pickle=False)`` reads them; ``load_trace`` adds checks and the record order.
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

import tracer
from tracer import TracerError
from tracer.recorder import Recorder
from tracer.schema import OPS, SCHEMA_VERSION, entry_for

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
        raise TracerError(f"--out {out} is a directory; give a file name such as {out / 'trace.npz'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise TracerError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise TracerError(f"cannot write {out}: permission denied")
    if out.suffix != ".npz":
        raise TracerError(f"--out {out} should end in .npz (numpy would append it silently)")
    return out


def save_trace(path: str | os.PathLike[str], trace: Trace) -> Path:
    """Write a trace atomically (a temporary file renamed into place, so no half-written trace)."""
    out = check_writable(path)
    records = {name: trace[name] for name in trace.names}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **records, **{META_KEY: np.array(json.dumps(trace.meta, ensure_ascii=False))})
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TracerError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:  # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI): no temporary file stays
        tmp.unlink(missing_ok=True)
        raise
    return out


class Trace:
    """A trace: records by name, in recording order, and its meta.

    In memory straight from a run (``path`` None), or opened from a file (records read lazily).
    """

    def __init__(self, path: Path | None, store: Mapping[str, np.ndarray], meta: dict[str, Any]):
        self.path = path
        self._store = store
        self.meta = meta
        self.info = {r["name"]: r for r in meta["records"]}
        self.name: str | None = path.name if path is not None else None

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
        if name not in self.info:
            raise KeyError(name)
        return self._store[name]

    def __contains__(self, name: object) -> bool:
        return name in self.info

    def __iter__(self) -> Iterator[str]:
        return iter(self.info)

    def __len__(self) -> int:
        return len(self.info)

    def close(self) -> None:
        if hasattr(self._store, "close"):
            self._store.close()


def load_trace(source: str | os.PathLike[str] | BinaryIO, name: str | None = None, *, max_bytes: int | None = None,
               allow_nonfinite: bool = False) -> Trace:
    """Open a trace file (a path, or an uploaded file's bytes with its ``name``), with a one-line TracerError
    for anything that is not a readable trace.

    The zip directory and ``.npy`` headers are checked before any array is read (``max_bytes``: the most the
    records may take once read; default the memory budget); records with NaN/Inf where the schema does not
    allow them are refused when read, unless ``allow_nonfinite`` (``tracer compare`` reports them instead).
    """
    from tracer.budget import default_budget
    from tracer.safefiles import CheckedStore, check_meta, escape_controls, inspect_npz, read_json_text, regular_file

    if isinstance(source, (str, os.PathLike)):
        p: Path | None = Path(source)
        label = escape_controls(str(p))
        if not p.exists():
            raise TracerError(f"trace file {label} does not exist")
        if not regular_file(p):
            raise TracerError(f"{label} is not a regular file; give a .npz trace file")
    else:
        p, label = None, escape_controls(name or "uploaded file")
    headers = inspect_npz(p if p is not None else source, label, default_budget() if max_bytes is None else max_bytes)
    if META_KEY not in headers:
        raise TracerError(f"{label} has no {META_KEY} entry; it is not a qwen3-tracer trace")
    try:
        if p is None:
            source.seek(0)  # type: ignore[union-attr]
        npz = np.load(p if p is not None else source, allow_pickle=False)
        meta = read_json_text(str(npz[META_KEY]), f"{label}: {META_KEY}")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TracerError(f"{label} is not a readable .npz trace ({exc})") from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or not isinstance(meta.get("records"), list):
        raise TracerError(f"{label}: {META_KEY} is not qwen3-tracer metadata")
    if version > SCHEMA_VERSION:
        raise TracerError(f"{label} uses trace schema v{version}, newer than this qwen3-tracer (v{SCHEMA_VERSION}); "
                          f"upgrade qwen3-tracer to open it")
    names = [r.get("name") if isinstance(r, dict) else None for r in meta["records"]]
    missing = [str(n) for n in names if n not in headers or n == META_KEY]
    if missing:
        raise TracerError(f"{label} lists records it does not contain (first: {escape_controls(missing[0])[:80]}); "
                          f"the file is damaged")
    check_meta(meta, label, version)
    store = CheckedStore(npz, headers, {r["name"]: r for r in meta["records"]}, label, allow_nonfinite)
    trace = Trace(p, store, meta)
    if p is None and name:
        trace.name = Path(name).name
    return trace
