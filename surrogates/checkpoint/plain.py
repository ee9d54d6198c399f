"""Plain data: what a model file may hold besides tensors (numbers, strings, bools, None, lists, dicts).

Constructor arguments, schemas and metrics are stored as plain data so that reading a file never
unpickles an object, and so that the values can be checked before anything is built from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PlainData = Any
"""``None | bool | int | float | str | list[PlainData] | dict[str, PlainData]``."""

MAX_DEPTH = 32
"""Nesting deeper than this is refused (a crafted file must not exhaust the stack)."""


class NotPlainData(TypeError):
    """A value is not plain data; ``where`` is its location, e.g. ``kwargs.modes[1]``."""

    def __init__(self, where: str, value: Any):
        self.where = where
        super().__init__(f"{where or 'value'} is a {type(value).__module__}.{type(value).__qualname__}, not plain data "
                         "(numbers, strings, bools, None, lists and dicts of them)")


def to_plain(value: Any) -> PlainData:
    """The plain-data copy of ``value``: OmegaConf containers, tuples and numpy scalars converted.

    Raises
    ------
    NotPlainData
        When a value cannot be represented as plain data (a function, a module, a tensor ...).
    """
    return _convert(value, "", 0)


def _convert(value: Any, where: str, depth: int) -> PlainData:
    if depth > MAX_DEPTH:
        raise NotPlainData(where, value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if _is_omegaconf(value):  # Hydra hands models DictConfig / ListConfig arguments, at any depth
        from omegaconf import OmegaConf

        return _convert(OmegaConf.to_container(value, resolve=True), where, depth)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return _convert(value.item(), where, depth)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotPlainData(f"{where}[{key!r}] (key)", key)
            out[key] = _convert(item, f"{where}.{key}" if where else key, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise NotPlainData(where, value)


def _is_omegaconf(value: Any) -> bool:
    return type(value).__module__.startswith("omegaconf.")


def check_plain(value: Any, where: str = "") -> None:
    """Raise :class:`NotPlainData` unless ``value`` is plain data as stored (no tuples, no numpy, finite or not).

    Floats may be ``nan`` / ``inf`` (metrics can be); everything else must be a plain builtin type.
    """
    _check(value, where, 0)


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise NotPlainData(where, value)
    if value is None or type(value) in (bool, int, float, str):
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise NotPlainData(f"{where}[{key!r}] (key)", key)
            _check(item, f"{where}.{key}" if where else key, depth + 1)
        return
    if type(value) is list:
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]", depth + 1)
        return
    raise NotPlainData(where, value)


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when it is a finite number, else None (for metrics read from files)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
