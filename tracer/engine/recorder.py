"""The recorder: an explicit identity that names each intermediate tensor of a forward pass.

``x = rec("layers.0.attn.q_rope", apply_rope(q, cos, sin), q, cos, sin)`` returns its value unchanged
(or rounded, in hand-calculation mode), keeps it read-only when its name is captured, and remembers which
recorded tensors or checkpoint weights it was computed from.
"""

from __future__ import annotations

import fnmatch
import re
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


class Recorder:
    """Collects named records in the order they are computed.

    ``capture``: glob patterns (``fnmatch``) of names to keep; None keeps everything.
    ``round_decimals``: hand-calculation mode, every float record rounded to N decimals before it is used.
    ``listener``: called with each record's name as it is computed (progress bars).
    ``edit``: called with each record's full name and value, returns the value to use instead (interventions).
    """

    def __init__(self, capture: list[str] | None = None, round_decimals: int | None = None, prefix: str = "",
                 listener: Callable[[str], None] | None = None,
                 edit: Callable[[str, np.ndarray], np.ndarray] | None = None):
        self.capture = capture
        # every glob in one regular expression: one match per record, however many globs (fnmatch semantics)
        self._capture_re = re.compile("|".join(fnmatch.translate(p) for p in capture) if capture else "(?!)")
        self.edit = edit
        self.listener = listener
        self.round_decimals = round_decimals
        self.records: dict[str, np.ndarray] = {}
        self.inputs: dict[str, list[str]] = {}
        self.ops: dict[str, str] = {}
        self.derived: set[str] = set()
        self.prefix = prefix
        # Inputs are named by identity. A kept record lives as long as this recorder, so its id is its own:
        # a plain id -> name map. Anything else (records the capture filter drops, weights) is held weakly
        # (id -> array, id -> name), so naming it keeps nothing alive and makes no reference cycle.
        self._kept: dict[int, str] = {}
        self._arrays: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()
        self._names: dict[int, str] = {}
        self._seen: set[str] = set()

    def __call__(self, name: str, value: np.ndarray, *inputs: np.ndarray | str, op: str | None = None,
                 derived: bool = False, appended: bool = False) -> np.ndarray:
        """Record ``value`` under ``prefix + name`` and return it (rounded in hand-calculation mode).

        ``derived``: the value was recomputed from captured tensors rather than captured (torch backend).
        ``appended``: ``value`` is a view of a buffer that is only ever written past its end (the KV cache), so
        it is kept as that view: its numbers never change, and a copy per step would cost what the step does.
        Any other view is copied (it would keep a larger array alive, or could change with it).
        """
        if self.edit is not None:
            value = self.edit(self.prefix + name, value)
        if self.capture == [] and self.round_decimals is None and self.listener is None:
            return value  # recording nothing: a pure identity, at no cost
        full = self.prefix + name
        if self.listener is not None:
            self.listener(full)
        if full in self._seen:
            raise ValueError(f"record name {full!r} used twice")
        self._seen.add(full)
        value = np.asarray(value)
        if self.round_decimals is not None and np.issubdtype(value.dtype, np.floating):
            value = np.asarray(np.round(value, self.round_decimals) + value.dtype.type(0))  # + 0: −0.0 -> 0.0
        if self.wants(full):
            self.inputs[full] = [self._name_of(x) for x in inputs]
            if value.base is not None and not appended:
                value = value.copy()
            value.flags.writeable = False
            self.records[full] = value
            self._kept[id(value)] = full
            if op is not None:
                self.ops[full] = op
            if derived:
                self.derived.add(full)
        else:
            self._kept.pop(id(value), None)  # the latest name of an array is the one its readers see
            self._remember(value, full)
        return value

    def wants(self, full_name: str) -> bool:
        """Whether a record of this name is kept (the capture filter)."""
        return self.capture is None or self._capture_re.match(full_name) is not None

    def asks(self, name: str) -> bool:
        """Whether ``--capture`` names this record explicitly (records too big to keep by default)."""
        return self.capture is not None and self.wants(self.prefix + name)

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
        self._arrays[id(array)] = array
        self._names[id(array)] = name

    def _name_of(self, x: np.ndarray | str) -> str:
        if isinstance(x, str):
            return x
        kept = self._kept.get(id(x))
        if kept is not None and self.records.get(kept) is x:
            return kept
        if self._arrays.get(id(x)) is not x:
            raise ValueError("an input of a record was neither recorded nor a named weight")
        return self._names[id(x)]


class _Params:
    """Checkpoint weights looked up by their Hugging Face names, registered as nameable inputs."""

    def __init__(self, weights: Mapping[str, np.ndarray], rec: Recorder):
        self._weights = weights
        self._rec = rec

    def __call__(self, name: str) -> np.ndarray:
        array = self._weights[name]
        if self._rec.capture != [] and self._rec._arrays.get(id(array)) is not array:
            self._rec._remember(array, name)
        return array

    def __contains__(self, name: Any) -> bool:
        return name in self._weights
