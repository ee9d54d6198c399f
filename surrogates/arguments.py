"""Range checks of constructor arguments (models, physics problems).

A model file stores its constructor arguments as plain data, and a reader builds the model from them
(:func:`surrogates.checkpoint.construct`). Arguments that fix a weight's shape are checked against the
file's tensors; every other argument (a padding fraction, an embedding scale, a step count, a
reference solver's resolution) is only as safe as its constructor's checks. These helpers make those
checks one line each and their messages alike; a constructor's ``ValueError`` becomes a
:class:`~surrogates.errors.CheckpointError` naming the file when the value came from one.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["as_integer", "check_count", "check_integer", "check_number"]


def check_number(
    name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
    low_open: bool = False, high_open: bool = False,
) -> float:
    """``float(value)`` when it is a finite real number (not a bool) within ``[low, high]``; ``ValueError`` otherwise.

    ``low_open`` / ``high_open`` exclude the bound itself (``0 < x`` instead of ``0 <= x``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def check_integer(name: str, value: Any) -> int:
    """``int(value)`` when it is an int (not a bool); ``ValueError`` otherwise (the range is the caller's to check)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def as_integer(name: str, value: Any) -> int:
    """``int(value)``, refusing what ``int`` would silently truncate: a number with a fraction (``1.5``) or a bool.

    A string goes through ``int`` as it is (``'12'`` is 12), so that text where a number belongs keeps Python's
    conversion message, which the commands turn into one naming the option (``data.n_train must be an integer,
    got 'abc'``).
    """
    if isinstance(value, bool) or (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
                                   and not float(value).is_integer()):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def check_count(name: str, value: Any, low: int = 0, high: int | None = None) -> int:
    """``value`` when it is an int (not a bool) within ``[low, high]``; ``ValueError`` otherwise."""
    check_integer(name, value)
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high if high is not None else 'inf'}], got {value}")
    return int(value)
