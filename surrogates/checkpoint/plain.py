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

MAX_NODES = 100_000
"""Values (containers, keys' items, scalars) a piece of stored plain data may hold in all; a model file's
metadata holds a few hundred. Bounds the time a check takes and the size of what is shown from it."""

MAX_STRING = 65_536
"""Characters a stored string or dict key may hold (paths, names, units: far shorter)."""

MAX_CHARACTERS = 2**22
"""Characters all strings and keys of a piece of stored plain data may hold together (a pickle can also
repeat one long string by reference: 100,000 references to a 65,536-character string would be 6.5 GB of
JSON in the service's model list)."""


class NotPlainData(TypeError):
    """A value is not plain data; ``where`` is its location, e.g. ``kwargs.modes[1]``; ``reason`` says why
    when it is not the value's type (a shared container, a size limit)."""

    def __init__(self, where: str, value: Any, reason: str | None = None):
        self.where = where
        if reason is None:
            reason = (f"is a {type(value).__module__}.{type(value).__qualname__}, not plain data "
                      "(numbers, strings, bools, None, lists and dicts of them)")
        super().__init__(f"{where or 'value'} {reason}")


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

    Floats may be ``nan`` / ``inf`` (metrics can be); everything else must be a plain builtin type. Data read
    from a file must also be a tree as written: a pickle can make one list appear twice (a memo reference),
    so ``[x, x]`` nested 30 times is a few hundred bytes that expand to 2^30 values for anything that walks
    or shows it (JSON of the service's model list). So a container met twice (shared, or inside itself) is
    refused, and so are more than :data:`MAX_NODES` values in all, strings longer than :data:`MAX_STRING`
    and more than :data:`MAX_CHARACTERS` characters in all.
    """
    _Walk().check(value, (where,) if where else (), 0)


class _Walk:
    """One pass of :func:`check_plain`: the containers met so far (by ``id``: the checked data is alive
    throughout), the values and characters counted. A value's location is kept as its path's segments and
    formatted only for an error (long keys shortened), so the walk costs no more than the data it reads."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.nodes = 0
        self.characters = 0

    def check(self, value: Any, path: tuple[str, ...], depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise NotPlainData(_where(path), value, f"is past the {MAX_NODES}th value: stored plain data may hold no more")
        if depth > MAX_DEPTH:
            raise NotPlainData(_where(path), value, f"is nested deeper than {MAX_DEPTH} levels: stored plain data may nest no deeper")
        if value is None or type(value) in (bool, int, float):
            return
        if type(value) is str:
            self.string(value, path)
            return
        if type(value) not in (dict, list):
            raise NotPlainData(_where(path), value)
        if id(value) in self.seen:
            raise NotPlainData(_where(path), value, "is a container met twice (shared or inside itself): stored plain data is a tree")
        self.seen.add(id(value))
        if type(value) is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise NotPlainData(f"{_where(path)}[{key!r}] (key)", key)
                self.string(key, path, is_key=True)
                self.check(item, (*path, key), depth + 1)
            return
        for i, item in enumerate(value):
            self.check(item, (*path, i), depth + 1)

    def string(self, value: str, path: tuple, is_key: bool = False) -> None:
        self.characters += len(value)
        if len(value) <= MAX_STRING and self.characters <= MAX_CHARACTERS:
            return
        where = f"a key of {_where(path) or 'the mapping'}" if is_key else _where(path)
        if len(value) > MAX_STRING:
            raise NotPlainData(where, value, f"is a string of {len(value)} characters, more than {MAX_STRING}")
        raise NotPlainData(where, value, f"is past the {MAX_CHARACTERS}th character: stored plain data may hold no more")


def _where(path: tuple) -> str:
    """``("training", "history", 0, 1)`` as ``training.history[0][1]`` (keys longer than 40 characters shortened)."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            text = segment if len(segment) <= 40 else segment[:37] + "..."
            out += f".{text}" if out else text
    return out


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when it is a finite number, else None (for metrics read from files)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
