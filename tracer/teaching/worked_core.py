"""What every worked cell is built from: the parameters read one row (or one column) at a time, numbers written
the way a student writes them, folded long sums, and the view one op's worker has of its record.

``tracer.teaching.worked`` holds the workers of the text forward pass and ``work_cell``; ``tracer.teaching.worked_vision``,
``tracer.teaching.worked_train`` and ``tracer.teaching.worked_interp`` those of the vision path, the training step and the logit lens /
attribution.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tracer import TracerError
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import weight_shapes
from tracer.traces.tracefile import Trace

FOLD = 6  # sums with more terms show the first three and the last two
CHUNK = 1 << 22  # random values generated (or checkpoint values converted) at a time
ROWS_KEPT = 16  # rows regenerated from far into a random stream that one Params keeps
VISION_PREFIX = "model.visual."
_DECODE = re.compile(r"^decode\.\d+\.")


# ---------------------------------------------------------------------------------------------------
# Parameters, one row at a time
# ---------------------------------------------------------------------------------------------------


class Params:
    """The checkpoint tensors a trace was computed with, by Hugging Face name, read one row at a time.

    A tensor of more than two axes (the vision patch embedding's Conv3d kernel) is read as [shape[0], rest]:
    row o is output channel o flattened, the way the forward multiplies by it. ``blocks`` and ``column`` walk
    a whole matrix a block of rows at a time, never holding all of it.
    """

    def __init__(self, meta: dict[str, Any]):
        self.cfg = Qwen3Config(**meta["config"])
        self.shapes = weight_shapes(self.cfg)
        self.dtype = np.dtype(meta.get("dtype") if meta.get("dtype") in ("float32", "float64") else "float32")
        self.model = str(meta.get("model"))
        self.seed = meta.get("seed")
        source = str(meta.get("source") or "")
        self.directory = Path(source[len("checkpoint "):]) if source.startswith("checkpoint ") else None
        self._table: dict[str, np.ndarray] | None = None
        self._rows: dict[tuple[str, int], np.ndarray] = {}  # the last rows regenerated from a long random stream
        self._stored: dict[str, str] = {}  # name -> the name the checkpoint file uses (Qwen3-VL's text tensors)
        self.vision = None
        vision = (meta.get("vision") or {}).get("config")
        if vision:
            from tracer.vision.config import VisionConfig
            from tracer.vision.forward import vision_weight_shapes
            from tracer.vision.weights import checkpoint_name

            self.vision = VisionConfig(**vision)
            self._stored = {n: checkpoint_name(n) for n in self.shapes}
            self.shapes.update(vision_weight_shapes(self.vision))

    def shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape as the checkpoint stores it ([out, in] for a linear weight)."""
        return self.shapes[name]

    def _rows_cols(self, name: str) -> tuple[int, int]:
        """The tensor read as [rows, cols] (a 1-D one as one row)."""
        shape = self.shapes[name]
        return (shape[0], int(np.prod(shape[1:]))) if len(shape) >= 2 else (1, shape[0])

    def row(self, name: str, i: int) -> np.ndarray:
        """Row ``i`` of a 2-D tensor (= column ``i`` of the seed's W), or the whole of a 1-D one (i ignored)."""
        shape = self.shapes[name]
        if self.directory is not None:
            return self._checkpoint_row(name, i)
        fixed = self._fixed()
        if fixed is not None:
            table = fixed[name]
            return np.asarray(table[i] if len(shape) == 2 else table, dtype=np.float64)
        return self._random_row(name, shape, i)

    def blocks(self, name: str) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) of a 2-D tensor, a bounded block at a time, in order (float64)."""
        rows, cols = self._rows_cols(name)
        step = max(1, CHUNK // cols)
        if self.directory is not None:
            kind, raw = self._checkpoint_map(name, rows * cols)
            matrix = raw.reshape(rows, cols)
            for start in range(0, rows, step):
                yield start, self._widen(matrix[start:start + step], kind)
            return
        fixed = self._fixed()
        if fixed is not None:
            yield 0, np.asarray(fixed[name], dtype=np.float64).reshape(rows, cols)
            return
        rng, scale = self._stream(name)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            values = rng.standard_normal(n * cols, dtype=np.float32)
            values *= scale
            yield start, values.astype(self.dtype).astype(np.float64).reshape(n, cols)

    def column(self, name: str, j: int) -> np.ndarray:
        """Column ``j`` of a 2-D tensor as stored (= row ``j`` of the seed's W), read block by block."""
        return np.concatenate([block[:, j] for _, block in self.blocks(name)])

    def _fixed(self) -> dict[str, np.ndarray] | None:
        from tracer.sources.presets import PRESETS

        preset = PRESETS.get(self.model)
        if preset is None or preset.weights is None:
            return None
        if self._table is None:
            self._table = {n: np.asarray(v, dtype=self.dtype) for n, v in preset.weights().items()}
        return self._table

    def _constant(self, name: str) -> float | None:
        """1 for a norm weight, 0 for a bias (how the random weights make them), else None."""
        if name.endswith(".bias"):
            return 0.0
        if name.startswith(VISION_PREFIX):
            return 1.0 if ".norm" in name and "linear" not in name else None
        return 1.0 if name.endswith("norm.weight") else None

    def _stream(self, name: str) -> tuple[np.random.Generator, np.float32]:
        """The tensor's own random stream and its scale (the text or the vision initializer range)."""
        stream = np.random.SeedSequence(entropy=self.seed or 0, spawn_key=(zlib.crc32(name.encode()),))
        vision = self.vision is not None and name.startswith(VISION_PREFIX)
        scale = self.vision.initializer_range if vision else self.cfg.initializer_range  # type: ignore[union-attr]
        return np.random.default_rng(stream), np.float32(scale)

    def _random_row(self, name: str, shape: tuple[int, ...], i: int) -> np.ndarray:
        """The row as the random weights make it: the tensor's own stream, generated only up to that row."""
        constant = self._constant(name)
        if constant is not None:
            return np.full(shape[-1], constant)
        _, cols = self._rows_cols(name)
        start = i * cols if len(shape) >= 2 else 0
        kept = self._rows.get((name, i))
        if kept is not None:
            return kept.copy()
        rng, scale = self._stream(name)
        done = 0
        while done + CHUNK <= start:
            rng.standard_normal(CHUNK, dtype=np.float32)
            done += CHUNK
        values = rng.standard_normal(start - done + cols, dtype=np.float32)[start - done:]
        values *= scale
        row = values.astype(self.dtype).astype(np.float64)
        if start >= CHUNK:  # worth keeping: the unembedding row of a target token is asked for again and again
            if len(self._rows) >= ROWS_KEPT:
                del self._rows[next(iter(self._rows))]
            self._rows[(name, i)] = row.copy()
        return row

    def _checkpoint_map(self, name: str, count: int, offset: int = 0) -> tuple[str, np.ndarray]:
        """The stored dtype and ``count`` values of the tensor from element ``offset`` on, memory-mapped."""
        from tracer.sources.checkpoint import SAFETENSORS_DTYPES, _header, weight_files

        stored = self._stored.get(name, name)
        path = weight_files(self.directory)[stored]
        info = _header(path)[stored]
        kind = SAFETENSORS_DTYPES[info["dtype"]]
        start = info["start"] + offset * np.dtype(kind).itemsize
        return info["dtype"], np.memmap(path, dtype=kind, mode="r", offset=start, shape=(count,))

    def _widen(self, raw: np.ndarray, kind: str) -> np.ndarray:
        """Stored values (bfloat16 as its upper bits) -> the trace's dtype -> float64."""
        if kind == "BF16":
            raw = (np.asarray(raw).astype(np.uint32) << 16).view(np.float32)
        return np.asarray(raw).astype(self.dtype).astype(np.float64)

    def _checkpoint_row(self, name: str, i: int) -> np.ndarray:
        """Row i of a tensor read from its safetensors file by memory map."""
        shape = self.shapes[name]
        _, cols = self._rows_cols(name)
        kind, raw = self._checkpoint_map(name, cols, i * cols if len(shape) >= 2 else 0)
        return self._widen(raw, kind)


# ---------------------------------------------------------------------------------------------------
# Numbers as a student writes them
# ---------------------------------------------------------------------------------------------------


def num(x: float, paren: bool = False) -> str:
    """``-0.41`` -> ``−0.41`` (``(−0.41)`` inside a product); 4 significant digits; −∞ stand-ins as −∞.

    >>> num(-0.4102, paren=True), num(12.5), num(-3.4e38), num(151000.0)
    ('(−0.4102)', '12.5', '−∞', '151000')
    """
    if x < -1e30:
        return "−∞"
    text = str(int(x)) if float(x).is_integer() and abs(x) < 1e9 else f"{x:.4g}"
    if text.startswith("-"):
        text = "−" + text[1:]
        return f"({text})" if paren else text
    return text


def fold(terms: list[str], joiner: str = " + ") -> str:
    """Terms of a long sum: the first three, …, the last two.

    >>> fold([str(k) for k in range(10)])
    '0 + 1 + 2 + … + 8 + 9'
    """
    if len(terms) <= FOLD:
        return joiner.join(terms)
    return joiner.join(terms[:3]) + f"{joiner}…{joiner}" + joiner.join(terms[-2:])


def dot_terms(a: np.ndarray, b: np.ndarray) -> str:
    """``a·b`` written out term by term, folded: ``0.1·0.3 + (−0.4)·0.05 + …``."""
    return fold([f"{num(x, True)}·{num(y, True)}" for x, y in zip(a, b)])


def sum_terms(values: np.ndarray) -> str:
    """A sum written out, folded: ``0.1 + (−0.4) + …``."""
    return fold([num(float(v), True) for v in np.ravel(values)])


def short(name: str) -> str:
    """A record or tensor name's last part: ``layers.0.attn.q_proj`` -> ``q_proj``."""
    return name.split(".")[-1]


@dataclass(frozen=True)
class Worked:
    """One cell redone by hand: its label, the derivation lines, the value they give, the recorded value."""

    cell: str
    lines: list[str]
    value: float
    recorded: float
    params: list[tuple[str, tuple[int, ...]]]


# ---------------------------------------------------------------------------------------------------
# What one op's worker sees
# ---------------------------------------------------------------------------------------------------


class Cell:
    """What one op's worker sees: the trace, the record, the index, its inputs and the parameters."""

    def __init__(self, trace: Trace, name: str, index: tuple[int, ...], params: Params, tr: Callable[..., str]):
        self.trace, self.name, self.index, self.params, self.tr = trace, name, index, params, tr
        self.info = trace.info[name]
        self.inputs: list[str] = list(self.info["inputs"])
        self.cfg = params.cfg
        self.short = name.split(".")[-1]
        decode = _DECODE.match(name)
        self.prefix = decode.group(0) if decode else ""  # ``decode.{s}.`` of a decode step's record, else ""
        self.used: list[tuple[str, tuple[int, ...]]] = []

    def get(self, name: str) -> np.ndarray:
        """Any record by its full name, floats widened to float64; a one-line error when it was not captured."""
        if name not in self.trace:
            raise TracerError.of("worked.missing_input", name=name, record=self.name)
        value = np.asarray(self.trace[name])
        return value.astype(np.float64) if np.issubdtype(value.dtype, np.floating) else value

    def input(self, k: int) -> str:
        """The name of the k-th input; a one-line error when the backend did not name it."""
        if k >= len(self.inputs):
            raise TracerError.of("worked.unnamed_input", k=k, record=self.name)
        return self.inputs[k]

    def rec(self, k: int) -> np.ndarray:
        """The k-th input as a recorded array (float64)."""
        return self.get(self.input(k))

    def _use(self, name: str) -> None:
        """Note a checkpoint tensor the cell reads (once)."""
        if all(name != n for n, _ in self.used):
            self.used.append((name, self.params.shape(name)))

    def weight(self, name: str, row: int) -> np.ndarray:
        """Row ``row`` of checkpoint tensor ``name`` (the whole of a 1-D one)."""
        self._use(name)
        return self.params.row(name, row)

    def param(self, k: int, row: int) -> np.ndarray:
        """Row ``row`` of the checkpoint tensor that is the k-th input."""
        return self.weight(self.input(k), row)

    def column(self, name: str, j: int) -> np.ndarray:
        """Column ``j`` of checkpoint tensor ``name``, read a block of rows at a time."""
        self._use(name)
        return self.params.column(name, j)

    def blocks(self, name: str) -> Iterator[tuple[int, np.ndarray]]:
        """Checkpoint tensor ``name`` a block of rows at a time."""
        self._use(name)
        return self.params.blocks(name)

    def label(self) -> str:
        """``q_proj[0,2,1]``: the record's short name and the cell."""
        return f"{self.short}[{','.join(str(i) for i in self.index)}]"


Worker = Callable[[Cell], tuple[list[str], float]]


def linear_line(c: Cell, x: np.ndarray, w_name: str, o: int, w: np.ndarray, x_label: str) -> tuple[list[str], float]:
    """``cell = Σ_d x[t,d]·W[d,o]`` with its terms and value."""
    value = float(x @ w)
    lines = [c.tr("worked.linear", cell=c.label(), x=x_label, w=w_name, o=o, n=len(x)),
             f"= {dot_terms(x, w)}", f"= {num(value)}"]
    return lines, value


def plus_bias(c: Cell, value: float, k: int, o: int) -> tuple[str, float]:
    """The line adding bias ``b[o]`` (the k-th input) to a projection's value, and the new value."""
    b = float(c.param(k, 0)[o])
    total = value + b
    return f"+ b[{o}] = {num(value)} + {num(b, True)} = {num(total)}", total
