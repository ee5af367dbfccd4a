"""Argument types of the command line: each value checked as it is parsed, with a one-line message naming it."""

from __future__ import annotations

import math
from collections.abc import Callable

from tracer import TracerError


def finite_float(flag: str, low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """A parser of finite numbers (no nan, inf) within [low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise TracerError.of("safety.not_number", flag=flag, value=text) from None
        if not math.isfinite(value):
            raise TracerError.of("safety.not_number", flag=flag, value=text)
        if high is None and low is not None and value < low:
            raise TracerError.of("safety.at_least", flag=flag, low=f"{low:g}", value=text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise TracerError.of("safety.out_of_range", flag=flag, low=low, high=high, value=text)
        return value

    return parse


def whole(flag: str, low: int, high: int) -> Callable[[str], int]:
    """A parser of whole numbers within [low, high] (ASCII digits only)."""
    def parse(text: str) -> int:
        body = text.strip().removeprefix("-")
        if not (body.isascii() and body.isdigit()) or len(body) > 18:
            raise TracerError.of("safety.not_whole", flag=flag, value=text)
        value = int(text)
        if not low <= value <= high:
            raise TracerError.of("safety.out_of_range", flag=flag, low=low, high=high, value=value)
        return value

    return parse
