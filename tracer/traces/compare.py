"""Diff two traces record by record: shapes, max absolute and relative error, a verdict, the first divergence."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracer import Message, TracerError
from tracer.safety.safefiles import nonfinite_problem
from tracer.traces.tracefile import Trace

# (relative, absolute) tolerance by the lower precision of the two traces; probabilities use the absolute one.
TOLERANCES = {"float64": (1e-9, 1e-12), "float32": (1e-4, 1e-5), "float16": (5e-3, 1e-3), "bfloat16": (4e-2, 1e-2)}
PROBABILITIES = ("attn.probs", "moe.router_probs", "moe.topk_weights", "moe.gates", ".probs")
NEG_INF_BELOW = -1e30  # masks: every "most negative float" counts as −∞, whatever the dtype


@dataclass(frozen=True)
class Row:
    """The comparison of one record."""

    name: str
    verdict: str  # OK, DIFF, SHAPE, MISSING, NONFINITE (NaN/Inf where the schema allows none: never "equal")
    max_abs: float | None = None
    max_rel: float | None = None
    message: Message | None = field(default=None, compare=False)
    """Why, when the verdict needs a word (a catalog message: ``note`` in English, ``note_text`` in any language)."""

    @property
    def note(self) -> str:
        """The note in English, as ``--json`` prints it."""
        return str(self.message) if self.message is not None else ""

    def note_text(self, lang: str = "en") -> str:
        """The note in ``lang``."""
        return self.message.text(lang) if self.message is not None else ""

    def verdict_text(self, lang: str = "en") -> str:
        """The verdict in ``lang`` (``OK``, ``DIFF`` … in English)."""
        return Message(f"compare.verdict_{self.verdict}").text(lang)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "verdict": self.verdict, "max_abs": self.max_abs, "max_rel": self.max_rel,
                "note": self.note}


def tolerance(a: Trace, b: Trace) -> tuple[float, float]:
    """The looser tolerance of the two traces' dtypes."""
    tols = [TOLERANCES.get(str(t.meta.get("dtype")), TOLERANCES["float32"]) for t in (a, b)]
    return max(t[0] for t in tols), max(t[1] for t in tols)


def compare_arrays(name: str, x: np.ndarray, y: np.ndarray, rtol: float, atol: float) -> Row:
    """OK when every element is within ``atol``, or the largest error is within ``rtol`` of the record's scale.

    ``max_rel`` is normwise: max |x − y| / max |y|. Integer records (token ids, experts) must be equal.
    """
    if x.shape != y.shape:
        return Row(name, "SHAPE", message=Message("compare.note_shape", a=list(x.shape), b=list(y.shape)))
    if x.size == 0:
        return Row(name, "OK", 0.0, 0.0)
    if not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating)):
        equal = np.array_equal(x, y)
        diff = float(np.max(np.abs(x.astype(np.int64) - y.astype(np.int64))))
        return Row(name, "OK" if equal else "DIFF", diff, diff)
    bad = nonfinite_problem(name, x) or nonfinite_problem(name, y)
    if bad:
        return Row(name, "NONFINITE", None, None, Message("compare.note_nonfinite", bad=bad))
    x64 = np.where(x < NEG_INF_BELOW, -np.inf, x.astype(np.float64))
    y64 = np.where(y < NEG_INF_BELOW, -np.inf, y.astype(np.float64))
    if not np.array_equal(np.isneginf(x64), np.isneginf(y64)):
        return Row(name, "DIFF", float("inf"), float("inf"), Message("compare.note_masked"))
    finite = np.isfinite(x64) & np.isfinite(y64)
    if not finite.any():
        return Row(name, "OK", 0.0, 0.0)
    err = np.abs(x64[finite] - y64[finite])
    max_abs = float(err.max())
    scale = float(np.abs(y64[finite]).max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    is_prob = any(name.endswith(p) for p in PROBABILITIES)
    ok = max_abs <= atol if is_prob else (max_abs <= atol or max_rel <= rtol)
    return Row(name, "OK" if ok else "DIFF", max_abs, max_rel)


def compare_traces(a: Trace, b: Trace) -> list[Row]:
    """One row per record name of either trace, in a's recording order, then b's extra names.

    Traces saved in half precision for display (``--store-dtype``) get no parity verdict: their rounding
    would be blamed on the engines.
    """
    for t in (a, b):
        if t.half_precision:
            raise TracerError.of("errors.half_precision_compare", label=t.label, dtype=t.half_precision)
    rtol, atol = tolerance(a, b)
    rows = []
    for name in a.names:
        if name not in b:
            rows.append(Row(name, "MISSING", message=Message("compare.note_only_in", label=a.label)))
        else:
            rows.append(compare_arrays(name, np.asarray(a[name]), np.asarray(b[name]), rtol, atol))
    rows += [Row(name, "MISSING", message=Message("compare.note_only_in", label=b.label))
             for name in b.names if name not in a]
    return rows


def first_divergence(rows: list[Row]) -> Row | None:
    """The first record, in computation order, where the traces part ways (DIFF, SHAPE or NONFINITE)."""
    return next((r for r in rows if r.verdict in ("DIFF", "SHAPE", "NONFINITE")), None)
