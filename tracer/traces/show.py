"""Text rendering of trace records, the way seed 004 prints them: name, shape, formula, matrix, meaning."""

from __future__ import annotations

import fnmatch
import unicodedata
from collections.abc import Mapping
from typing import Any

import numpy as np

from tracer.i18n import catalog, t
from tracer.text.tokentext import TokenText
from tracer.traces.schema import entry_for
from tracer.traces.tracefile import Trace


def axis_labels(trace: Trace, name: str, shape_spec: str, ndim: int) -> list[list[str] | None]:
    """Labels for each axis of a record from its schema shape: tokens for T/S, vocabulary for V."""
    letters = [a.strip() for a in shape_spec.split("]")[0].strip("[").split(",") if a.strip()]
    tokens, keys = step_tokens(trace, name)
    vocab = trace.meta.get("vocab")
    labels: list[list[str] | None] = []
    for letter in letters[:ndim]:
        if letter == "T":
            labels.append(tokens)
        elif letter == "S":
            labels.append(keys)
        elif letter == "n_e":
            rows = trace[name.rsplit(".", 1)[0] + ".token_ids"]
            labels.append([tokens[r] if r < len(tokens) else str(r) for r in rows])
        elif letter == "V" and vocab:
            labels.append(list(vocab))
        else:
            labels.append(None)
    return labels + [None] * (ndim - len(labels))


def step_tokens(trace: Trace, name: str) -> tuple[list[str], list[str]]:
    """(query tokens, key tokens) of the forward step a record belongs to, as text (partial characters as
    their bytes, ``<0xE6>``): the prompt, or at decode step s the new token against every cached one."""
    step = int(name.split(".")[1]) if name.startswith("decode.") else 0
    return TokenText(trace.meta).step_labels(step)


def explanation(name: str, lang: str = "en") -> str:
    """What a record is, in the reader's language (the ``schema`` catalog, keyed by the name pattern)."""
    entry = entry_for(name)
    key = f"schema.{entry.pattern}"
    return t(key, lang) if key in catalog("en") else entry.en  # a new schema name without its catalog entry yet


def formula_text(info: Mapping[str, Any], lang: str = "en") -> str:
    """A record's plain-text formula in the reader's language: where the file holds this version's English
    text of its op and the ``formulas`` catalog translates it; the file's own text otherwise (never changed).

    >>> formula_text({"op": "top_k", "formula_text": "ids[t] = the k experts with the largest P[t]"}, "zh")
    'ids[t] = P[t] 最大的 k 个专家'
    """
    text = str(info.get("formula_text", ""))
    key = f"formulas.{info.get('op')}"
    english = catalog("en").get(key)
    return t(key, lang) if english is not None and text == english else text


def format_matrix(m: np.ndarray, decimals: int, rows: list[str] | None = None, cols: list[str] | None = None,
                  max_rows: int = 12, max_cols: int = 10) -> str:
    """A 0-, 1- or 2-D array as an aligned table with optional labels, eliding the middle of big axes."""
    if m.ndim == 0:
        return _fmt(m.item(), decimals)
    if m.ndim == 1:
        m, rows = m[None, :], [""]
    r_idx = _keep(m.shape[0], max_rows)
    c_idx = _keep(m.shape[1], max_cols)
    cells = [[("…" if c is None or r is None else _fmt(m[r, c].item(), decimals)) for c in c_idx] for r in r_idx]
    head = [("…" if c is None else (cols[c] if cols and c < len(cols) else str(c))) for c in c_idx]
    row_names = [("…" if r is None else (rows[r] if rows and r < len(rows) else str(r))) for r in r_idx]
    width = max([_width(x) for row in cells for x in row] + [_width(h) for h in head])
    lead = max(_width(x) for x in row_names) if rows is not None or m.shape[0] > 1 else 0
    lines = [" " * (lead + 2) + " ".join(_rjust(h, width) for h in head)] if (cols or m.shape[1] > 1) else []
    for name, row in zip(row_names, cells):
        lines.append(_rjust(name, lead) + " [" + " ".join(_rjust(x, width) for x in row) + "]")
    return "\n".join(lines)


def _width(text: str) -> int:
    """Columns a string takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _rjust(text: str, width: int) -> str:
    return " " * max(0, width - _width(text)) + text


def _keep(n: int, limit: int) -> list[int | None]:
    if n <= limit:
        return list(range(n))
    half = limit // 2
    return list(range(half)) + [None] + list(range(n - half, n))


def _fmt(x: float | int, decimals: int) -> str:
    if isinstance(x, (int, np.integer)):
        return str(x)
    if not np.isfinite(x):
        return str(x)
    if abs(x) >= 1e6:
        return f"{x:.2e}"
    s = f"{x:.{decimals}f}"
    return "0" + s[2:] if s.startswith("-0") and float(s) == 0 else s


def format_record(trace: Trace, name: str, lang: str = "en", decimals: int = 3) -> str:
    """One record as the seed prints it: header, formula, inputs, the numbers, and the explanation."""
    info = trace.info[name]
    value = np.asarray(trace[name])
    shape = "×".join(str(d) for d in value.shape) or t("show.scalar", lang)
    lines = [f"── {name}  ({t('show.shape', lang)}={shape}, {info['dtype']})", f"   {formula_text(info, lang)}"]
    if info["inputs"]:
        lines.append(f"   {t('show.from', lang)}: {', '.join(info['inputs'])}")
    labels = axis_labels(trace, name, info["schema_shape"], value.ndim)
    if value.ndim == 3:
        for h in range(value.shape[0]):
            if value.shape[0] > 1 and h >= 4 and h < value.shape[0] - 1:
                if h == 4:
                    lines.append(f"   … {t('show.more', lang, n=value.shape[0] - 5)} …")
                continue
            lines.append(f"   [{h}]" if value.shape[0] > 1 else "")
            lines.append(_indent(format_matrix(value[h], decimals, labels[1], labels[2])))
        lines = [x for x in lines if x != ""]
    elif value.ndim == 2:
        lines.append(_indent(format_matrix(value, decimals, labels[0], labels[1])))
    elif value.ndim == 1:
        lines.append(_indent(format_matrix(value, decimals, None, labels[0])))
    else:
        lines.append(_indent(format_matrix(value, decimals)))
    lines.append(f"   {explanation(name, lang)}")
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())


def select(trace: Trace, pattern: str | None) -> list[str]:
    """Record names matching a glob (all when None), in recording order."""
    return [n for n in trace.names if pattern is None or fnmatch.fnmatchcase(n, pattern)]
