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
"""

from __future__ import annotations

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
        disagreeing on the number of samples, NaN/inf values.
    """
    path = Path(path)
    return read_dataset_file(
        path,
        lambda handle: _read(path, handle, layout),
        lambda info: sorted({source for source, _ in info.sources.values()}) if check_finite else [],
        unreadable="is not a readable NetCDF-4/HDF5 file (truncated or corrupt?)",
        not_opened="is not a readable NetCDF-4/HDF5 file ({error}); NetCDF-3, zarr and other formats go "
        "through surrogates-import",
    )


def _read(path: Path, handle: Any, layout: ForeignLayout) -> ForeignFileInfo:
    attrs = {key: plain(value) for key, value in handle.attrs.items() if not key.startswith("_")}
    renamed = {layout.sample_dim: SAMPLE_DIM, layout.time_dim: TIME_DIM}
    variables: dict[str, VariableInfo] = {}
    coords: dict[str, VariableInfo] = {}
    sources: dict[str, tuple[str, int | None]] = {}
    coord_sources: dict[str, str] = {}
    counts: dict[int, str] = {}
    for name, var in handle.variables.items():
        dims = tuple(var.dimensions)
        var_attrs = {key: plain(value) for key, value in var.attrs.items() if not key.startswith("_")}
        if dims == (name,):
            numeric = np.issubdtype(var.dtype, np.number)
            if numeric and name != layout.sample_dim and name not in layout.component_dims:
                ours = renamed.get(name, name)
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
        if len(dims) > 1 and dims[-1] in layout.component_dims:
            labels = _component_labels(handle, dims[-1], shape[-1])
            for k, label in enumerate(labels):
                offered = f"{name}_{label}"
                variables[offered] = VariableInfo(
                    ours[:-1], shape[:-1], str(var.dtype), {**var_attrs, "field": name, "component": label, "component_dim": dims[-1]}
                )
                sources[offered] = (name, k)
        else:
            variables[name] = VariableInfo(ours, shape, str(var.dtype), var_attrs)
            sources[name] = (name, None)
    if not variables:
        found = ", ".join(f"{n} {tuple(v.dimensions)}" for n, v in handle.variables.items()) or "no variables"
        raise DatasetFileError(path, f"no variable has the sample dim {layout.sample_dim!r} (found {found}); set data.sample_dim")
    if len(counts) > 1:
        raise DatasetFileError(path, "variables disagree on the number of samples: " + ", ".join(f"{v} has {n}" for n, v in counts.items()))
    return ForeignFileInfo(path, next(iter(counts)), attrs, variables, coords, sources, coord_sources)


def _component_labels(handle: Any, dim: str, size: int) -> list[str]:
    """Names of a component dim's entries: its coordinate's values (strings or numbers), else ``0 .. n-1``."""
    if dim in handle.variables and tuple(handle.variables[dim].dimensions) == (dim,):
        values = [plain(v) for v in np.asarray(handle.variables[dim][...]).tolist()]
        labels = [str(v) for v in values]
        if len(set(labels)) == size and all(label.isidentifier() or label.isdigit() for label in labels):
            return labels
    return [str(k) for k in range(size)]
