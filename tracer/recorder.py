"""The recorder: an explicit identity that names each intermediate tensor of a forward pass.

``x = rec("layers.0.attn.q_rope", apply_rope(q, cos, sin), q, cos, sin)`` returns its value unchanged
(or rounded, in hand-calculation mode), keeps it read-only when its name is captured, and remembers which
recorded tensors or checkpoint weights it was computed from.
"""

from __future__ import annotations

import fnmatch
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np


class Recorder:
    """Collects named records in the order they are computed.

    ``capture``: glob patterns (``fnmatch``) of names to keep; None keeps everything.
    ``round_decimals``: hand-calculation mode, every float record rounded to N decimals before it is used.
    """

    def __init__(self, capture: list[str] | None = None, round_decimals: int | None = None, prefix: str = ""):
        self.capture = capture
        self.round_decimals = round_decimals
        self.records: dict[str, np.ndarray] = {}
        self.inputs: dict[str, list[str]] = {}
        self.ops: dict[str, str] = {}
        self.derived: set[str] = set()
        self.prefix = prefix
        self._names: dict[int, tuple[weakref.ref[np.ndarray], str]] = {}
        self._seen: set[str] = set()

    def __call__(self, name: str, value: np.ndarray, *inputs: np.ndarray | str, op: str | None = None,
                 derived: bool = False) -> np.ndarray:
        """Record ``value`` under ``prefix + name`` and return it (rounded in hand-calculation mode).

        ``derived``: the value was recomputed from captured tensors rather than captured (torch backend).
        """
        full = self.prefix + name
        if full in self._seen:
            raise ValueError(f"record name {full!r} used twice")
        self._seen.add(full)
        value = np.asarray(value)
        if self.round_decimals is not None and np.issubdtype(value.dtype, np.floating):
            value = np.round(value, self.round_decimals) + value.dtype.type(0)  # + 0 turns −0.0 into 0.0
        self._remember(value, full)
        if self.wants(full):
            value.flags.writeable = False
            self.records[full] = value
            self.inputs[full] = [self._name_of(x) for x in inputs]
            if op is not None:
                self.ops[full] = op
            if derived:
                self.derived.add(full)
        return value

    def wants(self, full_name: str) -> bool:
        """Whether a record of this name is kept (the capture filter)."""
        return self.capture is None or any(fnmatch.fnmatchcase(full_name, pat) for pat in self.capture)

    def params(self, weights: Mapping[str, np.ndarray]) -> _Params:
        """A view of the checkpoint weights whose arrays can be named as inputs of records."""
        return _Params(weights, self)

    def scoped(self, prefix: str) -> Recorder:
        """A recorder writing into the same store with names under ``prefix`` (e.g. ``decode.3.``)."""
        child = Recorder.__new__(Recorder)
        child.__dict__.update(self.__dict__)
        child.prefix = prefix
        return child

    def _remember(self, array: np.ndarray, name: str) -> None:
        key = id(array)
        self._names[key] = (weakref.ref(array, lambda _ref, key=key: self._forget(key, _ref)), name)

    def _forget(self, key: int, ref: weakref.ref[np.ndarray]) -> None:
        entry = self._names.get(key)
        if entry is not None and entry[0] is ref:
            del self._names[key]

    def _name_of(self, x: np.ndarray | str) -> str:
        if isinstance(x, str):
            return x
        entry = self._names.get(id(x))
        if entry is None or entry[0]() is not x:
            raise ValueError("an input of a record was neither recorded nor a named weight")
        return entry[1]


class _Params:
    """Checkpoint weights looked up by their Hugging Face names, registered as nameable inputs."""

    def __init__(self, weights: Mapping[str, np.ndarray], rec: Recorder):
        self._weights = weights
        self._rec = rec

    def __call__(self, name: str) -> np.ndarray:
        array = self._weights[name]
        self._rec._remember(array, name)
        return array

    def __contains__(self, name: Any) -> bool:
        return name in self._weights
