"""What an importer makes of a source: the output variables and coordinates, and the parts to read.

A layout module (:mod:`.xarray_layout`, :mod:`.pdebench`, :mod:`.the_well`) turns source files into a
:class:`Plan`: the variables of the output files (``(sample, [time], *space)`` float32, per-sample
scalars ``(sample,)``), their coordinates, the inputs and targets, and a list of :class:`Part` s, each
a run of source samples (one file, usually) that reads a block of samples at a time, already in the
output layout. :mod:`.run` splits, streams and writes them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.fields import field_components

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
"""Folder or file names that mark a split in a source (The Well's ``valid`` is our ``val``)."""


class ImportDataError(ValueError):
    """A source cannot be imported as asked; the message is one line naming what was found and what was expected."""


class NotThisLayout(ImportDataError):
    """The source does not have the layout tried at all (no sample dim, nothing the layout reads), as opposed to a
    source of that layout with a fault: with ``layout=auto`` only this makes the error an "unknown layout" one."""


@dataclass
class OutVar:
    """One variable of the output files: ``dims`` without ``sample``, ``attrs`` written on the variable."""

    name: str
    dims: tuple[str, ...]
    units: str = "1"
    long_name: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutCoord:
    """One coordinate of the output files (1D, stored as float64); ``eps`` is the machine epsilon of the dtype the
    source stored it in (how closely the same grid from two files can be expected to agree)."""

    values: np.ndarray
    units: str = "1"
    long_name: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    eps: float = float(np.finfo(np.float64).eps)


def dtype_eps(dtype: Any) -> float:
    """Machine epsilon of a source coordinate's dtype (float64's for integers: they convert exactly)."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else float(np.finfo(np.float64).eps)


@dataclass
class Part:
    """A run of ``n_samples`` source samples, read ``read(start, stop) -> {output variable: (count, ...) array}``.

    ``split`` is the split the source assigns them to (``None``: no split in the source), ``files`` the
    source files whose checksums are recorded, ``sample_bytes`` what one sample costs to read.
    """

    label: str
    n_samples: int
    read: Callable[[int, int], dict[str, np.ndarray]]
    files: tuple[Path, ...]
    split: str | None = None
    sample_bytes: int = 0
    layout_key: Any = None  # what must agree between parts (variables and their shapes)


@dataclass
class Plan:
    """Everything the writer needs from a layout: what to write and where to read it."""

    layout: str
    pde: str
    variables: dict[str, OutVar]
    coords: dict[str, OutCoord]
    inputs: list[str]
    targets: list[str]
    parts: list[Part]
    attrs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # what of the source is not imported -> why, for messages

    def source_paths(self) -> list[Path]:
        """Every source file of the parts, each once, sorted."""
        return sorted({path for part in self.parts for path in part.files})


COORD_TOLERANCE_EPS = 4
"""Two coordinates are the same grid when they differ by at most this many epsilons (of the coarser dtype) of their
largest magnitude: rounding a grid to float32 or float64 moves each value by half an epsilon of itself, and grids
computed in different ways (``linspace``, ``start + i * h``) differ by a few roundings; a grid in other units or
with another spacing differs by far more."""


def grid_difference(a: Plan, b: Plan) -> str | None:
    """The first difference between what plans ``a`` and ``b`` write once for all samples (coordinate values, units
    and attributes such as ``periodic``, variable units and attributes, file attributes such as The Well's
    ``boundary_conditions``), as ``"<what> <a's> vs <b's>"``; ``None`` when they agree. The variables and the
    coordinates' lengths are compared by the parts' ``layout_key``."""
    for name in sorted(set(a.coords) | set(b.coords)):
        x, y = a.coords.get(name), b.coords.get(name)
        if x is None or y is None:
            return f"coordinate {name!r} {'absent' if x is None else 'present'} vs {'absent' if y is None else 'present'}"
        if x.units != y.units:
            return f"coordinate {name!r} units {x.units!r} vs {y.units!r}"
        if x.attrs != y.attrs:
            return f"coordinate {name!r} attributes {x.attrs} vs {y.attrs}"
        if (found := _values_difference(name, x, y)) is not None:
            return found
    for name in sorted(set(a.variables) & set(b.variables)):
        x, y = a.variables[name], b.variables[name]
        if x.units != y.units:
            return f"variable {name!r} units {x.units!r} vs {y.units!r}"
        if x.attrs != y.attrs:
            return f"variable {name!r} attributes {x.attrs} vs {y.attrs}"
    for key in sorted(set(a.attrs) | set(b.attrs)):
        if a.attrs.get(key) != b.attrs.get(key):
            return f"attribute {key!r} {_short(a.attrs.get(key))} vs {_short(b.attrs.get(key))}"
    return None


def _values_difference(name: str, x: OutCoord, y: OutCoord) -> str | None:
    """Where two coordinates' values differ beyond :data:`COORD_TOLERANCE_EPS` epsilons of their magnitude."""
    a, b = np.asarray(x.values, np.float64), np.asarray(y.values, np.float64)
    if a.shape != b.shape:
        return f"coordinate {name!r} has {a.size} values vs {b.size}"
    if a.size == 0:
        return None
    scale = float(max(np.nanmax(np.abs(a), initial=0.0), np.nanmax(np.abs(b), initial=0.0)))
    tolerance = COORD_TOLERANCE_EPS * max(x.eps, y.eps) * scale
    far = np.flatnonzero(~(np.abs(a - b) <= tolerance))  # NaN compares false: a NaN coordinate differs
    if far.size == 0:
        return None
    i = int(far[0])
    return (f"coordinate {name!r} values {name}[{i}] = {a[i]:.9g} vs {b[i]:.9g} "
            f"({name} = {a[0]:.6g} .. {a[-1]:.6g} vs {b[0]:.6g} .. {b[-1]:.6g})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def component_names(field_name: str, components: Sequence[str]) -> list[str]:
    """``velocity`` with components ``x, y`` -> ``["velocity_x", "velocity_y"]``."""
    return [f"{field_name}_{component}" for component in components]


def expand_names(names: Sequence[str], variables: Mapping[str, OutVar], role: str, source: str,
                 left_out: Mapping[str, str] | None = None) -> list[str]:
    """Variable names of ``inputs`` / ``targets``, a vector or tensor field's name standing for all its components.
    ``left_out``: names in the source that are not imported, with why (:attr:`Plan.left_out`).

    Raises
    ------
    ImportDataError
        Naming the unknown name (why it was left out, when it is in the source) and the available variables and
        fields, or a name with white space.
    """
    fields = field_components(variables)
    out: list[str] = []
    for name in names:
        name = str(name)
        if name in variables:
            out.append(name)
        elif name in fields:
            out.extend(fields[name])
        else:
            why = (left_out or {}).get(name)
            raise ImportDataError(
                (f"{role}: {name!r} of {source} {why}, so it is not imported" if why else
                 f"{role}: {name!r} is not a variable of {source}")
                + f"; available: {describe_variables(variables)}"
                + (f" (fields with components: {', '.join(sorted(fields))})" if fields else "")
            )
    for name in out:
        if len(name.split()) != 1:  # the files list inputs and targets as one space-separated attribute
            raise ImportDataError(
                f"{role}: the variable {name!r} of {source} has white space in its name, which the files' "
                f"space-separated inputs / targets attributes cannot hold; expected a name without it: rename it in "
                f"the source, e.g. ds.rename({{{name!r}: {'_'.join(name.split())!r}}})"
            )
    return list(dict.fromkeys(out))


def describe_variables(variables: Mapping[str, OutVar]) -> str:
    """``"a (sample, x, y), u (sample, x, y)"`` for messages."""
    return ", ".join(f"{name} ({', '.join(('sample', *var.dims))})" for name, var in sorted(variables.items())) or "none"


def file_sha256(path: Path, block: int = 8 * 2**20, progress: Callable[[int], Any] | None = None) -> str:
    """SHA-256 of a file's bytes, read in blocks (a zarr store: of its files' relative names and bytes, in sorted
    order); ``progress(n)`` is called with the size of every block read."""
    digest = hashlib.sha256()
    items = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    buffer = bytearray(block)  # one buffer, read into again and again: no block allocated per read
    view = memoryview(buffer)
    for item in items:
        if path.is_dir():
            digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        with open(item, "rb", buffering=0) as handle:
            while size := handle.readinto(buffer):
                digest.update(view[:size])
                if progress is not None:
                    progress(size)
    return digest.hexdigest()


def source_state(path: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a source is rewritten: the size, modification time (ns) and inode of the file, or of every
    file of a store. The importer compares it before publishing, so that samples read from a file that another
    process changed meanwhile (a mix of two versions) are never published."""
    items = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    states = []
    for item in items:
        stat = item.stat()
        states.append((str(item), stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(states)


def source_bytes(path: Path) -> int:
    """Bytes of a file, or of every file of a store."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


DATA_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nc", ".nc4", ".netcdf", ".cdf", ".zarr")


def is_zarr(path: Path) -> bool:
    return path.is_dir() and (path.suffix == ".zarr" or any((path / name).exists() for name in (".zgroup", ".zattrs", "zarr.json")))


def source_files(source: str | os.PathLike) -> list[Path]:
    """The data files a ``source=`` names: a file, a zarr store, a folder (searched recursively) or a glob.

    Raises
    ------
    ImportDataError
        When nothing matches (naming what was looked for).
    """
    import glob

    text = os.path.expanduser(str(source))
    if any(ch in text for ch in "*?["):
        matches = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        files: list[Path] = []
        for match in matches:
            files.extend(source_files(match) if match.is_dir() and not is_zarr(match) else [match])
        if not files:
            raise ImportDataError(f"source={source!r} matches no file")
        return files
    path = Path(text)
    if not path.exists():
        raise ImportDataError(f"source {path} does not exist")
    if path.is_file() or is_zarr(path):
        return [path]
    found: list[Path] = []
    for root, dirs, names in os.walk(path):
        here = Path(root)
        for name in sorted(dirs):
            if is_zarr(here / name):
                found.append(here / name)
        dirs[:] = sorted(d for d in dirs if not is_zarr(here / d) and not d.startswith("."))
        found.extend(here / name for name in sorted(names) if Path(name).suffix.lower() in DATA_SUFFIXES)
    if not found:
        raise ImportDataError(
            f"source folder {path} holds no data file (looked for {', '.join(DATA_SUFFIXES)} and zarr stores)"
        )
    return sorted(found)


def source_root(source: str | os.PathLike) -> Path | None:
    """The folder under which a source's files may name their splits: the folder itself, or a glob's fixed prefix;
    ``None`` for a single file or store (it has no split, whatever its folder is called)."""
    text = os.path.expanduser(str(source))
    if any(ch in text for ch in "*?["):
        prefix = Path(re.split(r"[*?\[]", text)[0])
        return prefix if str(prefix).endswith(os.sep) or prefix.is_dir() else prefix.parent
    path = Path(text)
    return path if path.is_dir() and not is_zarr(path) else None


def split_of(path: Path, root: Path | None) -> str | None:
    """The split a source path names below ``root``: a folder ``train/``, ``valid/``, ``test/`` ... or a file
    ``train.h5``; ``None`` otherwise, and always for a source without a root (:func:`source_root`)."""
    if root is None or not path.is_relative_to(root):
        return None
    parts = path.relative_to(root).parts
    stem = Path(parts[-1]).stem.lower() if parts else ""
    if stem in SPLIT_ALIASES:
        return SPLIT_ALIASES[stem]
    for part in reversed(parts[:-1]):
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return None
