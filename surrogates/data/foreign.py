"""Reading NetCDF-4/HDF5 files that were not written by the package (``data=xarray``).

A foreign file needs no provenance attributes: its data variables need a sample dim (any name, first),
an optional time dim right after it, and spatial dims; coordinate variables give physical grid spacings
when present. A variable with a trailing *component* dim (a vector or tensor field, e.g.
``velocity (sample, x, y, component)``) is offered as one variable per component, named
``<variable>_<label>`` (``velocity_x``, ``velocity_y``) after the component coordinate's values, or
its indices when it has none.

:func:`inspect_foreign` returns the same :class:`~surrogates.data.schema.FileInfo` as the reader of
our own files, with the sample and time dims renamed to ``sample`` and ``time`` and the components
listed, so :class:`~surrogates.data.dataset.FieldDataset` reads both kinds alike.

The variables are read as stored (h5py), not CF-decoded as xarray reads them. So that both routes read the
same numbers, a variable whose stored values are not its data is marked unusable
(:attr:`ForeignFileInfo.unusable`) and refused when it is used (:meth:`ForeignFileInfo.require_usable`): packed
values (``scale_factor``, ``add_offset``, ``_Unsigned``; ``surrogates-import`` decodes them), complex, string
and other non-real dtypes, and an offered name that two variables would take (a variable ``v_x`` beside
component ``x`` of ``v``). A packed coordinate is left out and refused when a variable used lies along its dim
(:attr:`ForeignFileInfo.unusable_coords`: its stored numbers would give wrong grid spacings). Values equal to a variable's ``_FillValue`` or ``missing_value`` are missing (xarray
reads them as NaN) and refused like NaN, naming the sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.schema import (
    SAMPLE_DIM,
    TIME_DIM,
    DatasetFileError,
    FileInfo,
    VariableInfo,
    plain,
    read_dataset_file,
)

__all__ = ["DEFAULT_COMPONENT_DIMS", "ForeignFileInfo", "ForeignLayout", "inspect_foreign"]

DEFAULT_COMPONENT_DIMS = ("component", "components", "channel", "channels")
"""Trailing dims read as the components of a vector or tensor field, by default."""

PACKING_ATTRS = ("scale_factor", "add_offset", "_Unsigned")
"""CF attributes under which the stored values are not the data (xarray decodes them; this reader does not)."""

MISSING_ATTRS = ("_FillValue", "missing_value")
"""CF attributes whose values mark missing data (xarray reads them as NaN)."""

_SCAN_BYTES = 64 * 2**20  # the missing-value scan reads at most this many bytes at a time


@dataclass(frozen=True)
class ForeignLayout:
    """How a foreign file's dims map onto ours.

    Attributes
    ----------
    sample_dim
        The file's name of the sample dim (first dim of every data variable used).
    time_dim
        The file's name of the time dim (right after the sample dim), if any.
    component_dims
        Trailing dims that hold the components of vector and tensor fields.
    """

    sample_dim: str = SAMPLE_DIM
    time_dim: str = TIME_DIM
    component_dims: tuple[str, ...] = DEFAULT_COMPONENT_DIMS

    def to_dict(self) -> dict[str, Any]:
        return {"sample_dim": self.sample_dim, "time_dim": self.time_dim, "component_dims": list(self.component_dims)}


@dataclass
class ForeignFileInfo(FileInfo):
    """:class:`FileInfo` of a foreign file, plus where each offered variable is stored.

    ``sources`` maps an offered name to ``(stored name, component index or None)``, e.g.
    ``{"velocity_x": ("velocity", 0), "a": ("a", None)}``.
    """

    sources: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    coord_sources: dict[str, str] = field(default_factory=dict)
    """Our coordinate name -> the file's (they differ for a renamed time dim)."""
    unusable: dict[str, str] = field(default_factory=dict)
    """Offered name -> why it cannot be read as stored (a sentence naming the stored variable and what it holds);
    unused ones do not matter, so they are refused only when named (:meth:`require_usable`)."""

    file_dim_names: dict[str, str] = field(default_factory=dict)
    """Our dim name -> the file's, where they differ (``{"sample": "n"}``), for messages in the file's names."""
    unusable_coords: dict[str, str] = field(default_factory=dict)
    """Our coordinate name -> why its stored values are not its values (packed); such a coordinate is left out
    of :attr:`coords` and refused when a named variable lies along its dim (:meth:`require_usable`)."""

    def require_usable(self, names: Iterable[str]) -> None:
        """Refuse the first of ``names`` that is :attr:`unusable`, or that lies along a dim whose coordinate is
        (:attr:`unusable_coords`); names the file lacks are left to the caller.

        Raises
        ------
        DatasetFileError
            Naming the file, the variable or coordinate and why it cannot be read as stored.
        """
        for name in names:
            if name in self.unusable:
                raise DatasetFileError(self.path, self.unusable[name])
            dims = self.variables[name].dims[1:] if name in self.variables else ()
            for dim in dims:
                if dim in self.unusable_coords:
                    raise DatasetFileError(self.path, f"variable {name!r} lies along {self.unusable_coords[dim]}")


def inspect_foreign(path: str | Path, layout: ForeignLayout, check_finite: bool = True) -> ForeignFileInfo:
    """Read a foreign NetCDF-4/HDF5 file's variables as the package's readers see them.

    Parameters
    ----------
    path
        The file.
    layout
        The names of its sample, time and component dims.
    check_finite
        Scan the float variables for NaN/inf (a block of samples at a time).

    Raises
    ------
    DatasetFileError
        Missing or unreadable file (not HDF5: NetCDF-3 and zarr go through ``surrogates-import``), no
        variable with the sample dim, a sample dim not first, a time dim not right after it, variables
        disagreeing on the number of samples, NaN/inf values or values equal to a variable's ``_FillValue``
        or ``missing_value`` (with ``check_finite``). Variables that cannot be read as stored are not refused
        here but listed in :attr:`ForeignFileInfo.unusable`.
    """
    path = Path(path)
    return read_dataset_file(
        path,
        lambda handle: _read(path, handle, layout, check_finite),
        lambda info: _usable_sources(info) if check_finite else [],
        unreadable="is not a readable NetCDF-4/HDF5 file (truncated or corrupt?)",
        not_opened="is not a readable NetCDF-4/HDF5 file ({error}); NetCDF-3, zarr and other formats go "
        "through surrogates-import",
        sample_dim=layout.sample_dim,
    )


def _read(path: Path, handle: Any, layout: ForeignLayout, scan_missing: bool = False) -> ForeignFileInfo:
    attrs = {key: plain(value) for key, value in handle.attrs.items() if not key.startswith("_")}
    renamed = {layout.sample_dim: SAMPLE_DIM, layout.time_dim: TIME_DIM}
    offered = _Offered()
    coords: dict[str, VariableInfo] = {}
    coord_sources: dict[str, str] = {}
    unusable_coords: dict[str, str] = {}
    counts: dict[int, str] = {}
    for name, var in handle.variables.items():
        dims = tuple(var.dimensions)
        var_attrs = {key: plain(value) for key, value in var.attrs.items() if not key.startswith("_")}
        if dims == (name,):
            numeric = np.issubdtype(var.dtype, np.number)
            if numeric and name != layout.sample_dim and name not in layout.component_dims:
                ours = renamed.get(name, name)
                packed = _packing(var)
                if packed:  # its grid spacing and extent would be the stored numbers': left out, refused when used
                    unusable_coords[ours] = (
                        f"coordinate {name!r}, which is stored CF-encoded ({packed}): the stored numbers are not the "
                        "coordinate's values, and data=xarray reads them as stored; convert the file with "
                        "surrogates-import, which decodes them"
                    )
                    continue
                coords[ours] = VariableInfo((ours,), tuple(var.shape), str(var.dtype), var_attrs)
                coord_sources[ours] = name
            continue
        if layout.sample_dim not in dims:
            continue  # not per sample: ignored, as xarray's non-sample variables are
        if dims[0] != layout.sample_dim:
            raise DatasetFileError(
                path, f"variable {name!r} has dims {dims}; the sample dim {layout.sample_dim!r} must come first "
                f"(transpose it, e.g. ds.transpose({layout.sample_dim!r}, ...))"
            )
        if layout.time_dim in dims[2:]:
            raise DatasetFileError(path, f"variable {name!r} has dims {dims}; {layout.time_dim!r} must directly follow {layout.sample_dim!r}")
        counts.setdefault(int(var.shape[0]), name)
        ours = tuple(renamed.get(d, d) for d in dims)
        shape = tuple(int(n) for n in var.shape)
        problem = _stored_problem(name, var)
        if len(dims) > 1 and dims[-1] in layout.component_dims:
            labels = _component_labels(handle, dims[-1], shape[-1])
            for k, label in enumerate(labels):
                attrs_k = {**var_attrs, "field": name, "component": label, "component_dim": dims[-1]}
                _offer(offered, f"{name}_{label}", VariableInfo(ours[:-1], shape[:-1], str(var.dtype), attrs_k), (name, k), problem)
        else:
            _offer(offered, name, VariableInfo(ours, shape, str(var.dtype), var_attrs), (name, None), problem)
    if not offered.variables:
        found = ", ".join(f"{n} {tuple(v.dimensions)}" for n, v in handle.variables.items()) or "no variables"
        raise DatasetFileError(path, f"no variable has the sample dim {layout.sample_dim!r} (found {found}); set data.sample_dim")
    if len(counts) > 1:
        raise DatasetFileError(path, "variables disagree on the number of samples: " + ", ".join(f"{v} has {n}" for n, v in counts.items()))
    info = ForeignFileInfo(
        path, next(iter(counts)), attrs, offered.variables, coords, offered.sources, coord_sources,
        dict(offered.problems),
        {ours: theirs for theirs, ours in renamed.items() if theirs != ours},
        unusable_coords,
    )
    if scan_missing:
        for source in _usable_sources(info):
            _check_missing_values(path, source, handle.variables[source])
    return info


@dataclass
class _Offered:
    """The variables a file offers as they are collected: name -> info, name -> (stored name, component),
    name -> why it cannot be read."""

    variables: dict[str, VariableInfo] = field(default_factory=dict)
    sources: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def _offer(offered: _Offered, name: str, info: VariableInfo, source: tuple[str, int | None], problem: str | None) -> None:
    """Offer ``name``; a name that two variables would take is offered once, marked as ambiguous.

    The component keeps the name, so that naming its field still finds every component (and so the ambiguity)."""
    if name in offered.sources:
        before = offered.sources[name]
        offered.problems[name] = (
            f"{name!r} names both {_describe(offered.variables[name], before)} and {_describe(info, source)}; "
            f"rename one of them in the file (e.g. ds = ds.rename({{{name!r}: {name + '_2'!r}}}))"
        )
        if before[1] is not None:  # the component came first: it keeps the name
            return
    elif problem is not None:
        offered_as = "" if name == source[0] else f" (offered as {name!r})"
        offered.problems[name] = f"{_describe(info, source)}{offered_as} is {problem}"
    offered.variables[name] = info
    offered.sources[name] = source


def _describe(info: VariableInfo, source: tuple[str, int | None]) -> str:
    """``variable 'v_x'`` or ``component 'x' of variable 'v' (dim 'component')``, for messages."""
    stored, component = source
    if component is None:
        return f"variable {stored!r}"
    return f"component {info.attrs['component']!r} of variable {stored!r} (dim {info.attrs['component_dim']!r})"


def _stored_problem(name: str, var: Any) -> str | None:
    """Why variable ``name`` cannot be read as stored (h5py, cast to float32), or None.

    Real numbers (bool, integers, floats) can; packed values (:data:`PACKING_ATTRS`) are not the data, and
    complex, strings, objects and compound types are not real numbers."""
    try:
        dtype = np.dtype(var.dtype)
    except TypeError:  # a NetCDF-4 user type (enum, compound, vlen) that numpy does not describe
        return f"stored as {var.dtype!r}, not as numbers: data=xarray reads real numbers (bool, integer, float) only"
    if dtype.kind == "c":
        return (
            f"stored as {dtype}: data=xarray reads real numbers and would drop the imaginary part (store the real "
            f"and imaginary parts as two variables, e.g. ds[{name + '_re'!r}] = ds[{name!r}].real)"
        )
    if dtype.kind not in "biuf":
        return f"stored as {dtype}, not as numbers: data=xarray reads real numbers (bool, integer, float) only"
    listed = _packing(var)
    if listed:
        return (
            f"stored CF-encoded ({listed}): the stored numbers are not the data, and data=xarray reads them as "
            "stored; convert the file with surrogates-import, which decodes them"
        )
    return None


def _packing(var: Any) -> str:
    """``var``'s :data:`PACKING_ATTRS` as ``key=value, ...`` (empty when it has none)."""
    return ", ".join(f"{key}={plain(var.attrs[key])!r}" for key in PACKING_ATTRS if key in var.attrs)


def _usable_sources(info: ForeignFileInfo) -> list[str]:
    """The stored variables behind the offered names that can be read, each once, sorted."""
    return sorted({source for name, (source, _) in info.sources.items() if name not in info.unusable})


def _missing_markers(var: Any) -> np.ndarray:
    """The numeric values of ``var``'s :data:`MISSING_ATTRS`, as stored (compared exactly), without NaN: a NaN
    marker is left to the NaN scan, and markers of non-numeric variables to the dtype check."""
    if np.dtype(var.dtype).kind not in "biuf":
        return np.empty(0)
    found = [np.asarray(var.attrs[key]).reshape(-1) for key in MISSING_ATTRS if key in var.attrs]
    markers = [values for values in found if values.dtype.kind in "biuf"]
    if not markers:
        return np.empty(0)
    values = np.concatenate(markers)
    return values[~np.isnan(values.astype(np.float64))]


def _check_missing_values(path: Path, name: str, var: Any) -> None:
    """Raise :class:`DatasetFileError` at the first sample of ``var`` holding one of its missing-value markers
    (as xarray reads them: NaN), in bounded reads."""
    markers = _missing_markers(var)
    if not markers.size:
        return
    n = int(var.shape[0])
    per_sample = max(1, int(np.prod(var.shape[1:], dtype=np.int64)) * np.dtype(var.dtype).itemsize)
    step = max(1, _SCAN_BYTES // per_sample)
    for start in range(0, n, step):
        block = np.asarray(var[start : start + step])
        missing = np.isin(block, markers).reshape(block.shape[0], -1).any(axis=1)
        if missing.any():
            bad = start + np.flatnonzero(missing)
            more = f" (and {bad.size - 1} more in this block)" if bad.size > 1 else ""
            listed = ", ".join(f"{key}={plain(var.attrs[key])!r}" for key in MISSING_ATTRS if key in var.attrs)
            raise DatasetFileError(
                path, f"variable {name!r} holds missing values ({listed}; xarray reads them as NaN) at sample "
                f"{int(bad[0])}{more}; fill them or drop those samples"
            )


def _component_labels(handle: Any, dim: str, size: int) -> list[str]:
    """Names of a component dim's entries: its coordinate's values (strings or numbers), else ``0 .. n-1``."""
    if dim in handle.variables and tuple(handle.variables[dim].dimensions) == (dim,):
        values = [plain(v) for v in np.asarray(handle.variables[dim][...]).tolist()]
        labels = [str(v) for v in values]
        if len(set(labels)) == size and all(label.isidentifier() or label.isdigit() for label in labels):
            return labels
    return [str(k) for k in range(size)]
