"""Anything xarray opens (NetCDF, HDF5 / NetCDF-4, zarr): variables mapped to inputs and targets, dims to ours.

Every data variable with the sample dim (``dims.sample``, default ``sample``) is imported: a field
``(sample, [time], *space)`` (the time dim named by ``dims.time`` (default ``time``) is renamed ``time`` and put after ``sample``, other dims keep their
names or take those of ``dims.rename``), a per-sample scalar ``(sample,)``, and a vector or tensor field
with one more dim listed in ``component_dims`` (default ``component``, ``components``) is split into
``<field>_<component>`` variables, the component names from that dim's coordinate labels (else ``0, 1, ...``).
Coordinates keep their values, ``units`` and ``long_name`` (dates and durations: seconds, ``units`` ``seconds since
<the first date>`` or ``s``); a dim without coordinate gets ``0 .. n - 1``;
``periodic=[x, y]`` marks periodic dims. The files record which dim of the source each of their dims was
(:data:`SOURCE_DIMS_ATTR`). ``dims.time`` and ``dims.rename`` must name dims of the file, and no two
dims may get one name. Variables without the sample dim, and strings, complex numbers and objects, are left out
(listed in the notes); booleans are imported as 0 / 1. Two
variables that would get one name (a variable ``v_x`` and the component ``x`` of a field ``v``) are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.importers.plan import ImportDataError, NotThisLayout, OutCoord, OutVar, Part, Plan, dtype_eps, is_zarr
from surrogates.data.schema import SOURCE_DIMS_ATTR

EXPECTED = "an xarray dataset (NetCDF, HDF5/NetCDF-4, zarr) whose data variables have a sample dim (dims.sample=<name>)"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def open_source(path: Path) -> Any:
    """``xarray.open_dataset`` with the engine for the file's kind (lazy: nothing is read yet)."""
    import xarray as xr

    if is_zarr(path):
        try:
            import zarr  # noqa: F401
        except ImportError as error:
            raise ImportDataError(
                f"{path} is a zarr store; reading it needs the zarr package (pip install 'surrogates[import]')"
            ) from error
        return xr.open_zarr(path, consolidated=None, chunks=None)
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic == HDF5_MAGIC:
        return xr.open_dataset(path, engine="h5netcdf", phony_dims="access", chunks=None, cache=False)
    if magic[:3] == b"CDF":
        return xr.open_dataset(path, engine="scipy", chunks=None, cache=False)
    return xr.open_dataset(path, chunks=None, cache=False)


def plan_file(path: Path, split: str | None, options: Mapping[str, Any]) -> Plan:
    """The plan of one file or store opened with xarray.

    ``options``: ``dims`` (``sample``, ``time``, ``rename``), ``component_dims``, ``periodic``, ``pde``,
    ``inputs``, ``targets`` (``None``: the file's own ``inputs`` / ``targets`` attributes, when it has them).
    """
    try:
        ds = open_source(path)
    except ImportDataError:
        raise
    except Exception as error:
        raise NotThisLayout(f"{path}: xarray cannot open it ({' '.join(str(error).split())[:200]})") from error
    dims_opt = dict(options.get("dims") or {})
    sample_dim = str(dims_opt.get("sample") or "sample")
    time_dim = dims_opt.get("time") or ("time" if "time" in ds.dims and sample_dim != "time" else None)
    rename = {str(k): str(v) for k, v in (dims_opt.get("rename") or {}).items()}
    if time_dim:
        rename[str(time_dim)] = "time"
    component_dims = [str(d) for d in (options.get("component_dims") or ["component", "components"])]
    periodic = {str(d) for d in (options.get("periodic") or [])}

    found = ", ".join(f"{name} {tuple(var.dims)} {tuple(var.shape)}" for name, var in ds.data_vars.items()) or "no variables"
    if sample_dim not in ds.dims:
        ds.close()
        raise NotThisLayout(
            f"{path}: no dim {sample_dim!r} to take samples along; found {found} (dims {dict(ds.sizes)}); "
            f"set dims.sample=<dim> (and dims.time=<dim> for trajectories)"
        )
    try:
        _check_dims(path, ds, sample_dim, dims_opt.get("time"), dims_opt.get("rename") or {})
    except ImportDataError:
        ds.close()
        raise
    variables: dict[str, OutVar] = {}
    coords: dict[str, OutCoord] = {}
    source_names: dict[str, str] = {"sample": sample_dim}  # our dim -> the file's, for SOURCE_DIMS_ATTR
    sources: dict[str, tuple[str, tuple[str, ...], str | None, Any]] = {}  # out name -> (var, order, comp dim, index)
    skipped: list[str] = []  # without the sample dim
    left_out = {  # per-sample values kept as coordinates (ds.assign_coords(nu=("sample", nu))) are no data variables
        str(name): f"is a coordinate along {sample_dim!r}, not a data variable (ds.reset_coords({str(name)!r}) makes it one)"
        for name, coord in ds.coords.items() if sample_dim in coord.dims and name != sample_dim
    }
    not_numbers: list[str] = []  # strings, complex numbers, objects: no float32 value
    for name, var in ds.data_vars.items():
        name = str(name)
        if sample_dim not in var.dims:
            skipped.append(name)
            left_out[name] = f"has no dim {sample_dim!r} (its dims: {tuple(str(d) for d in var.dims)})"
            continue
        numeric = np.issubdtype(var.dtype, np.number) or var.dtype.kind == "b"  # bool: 0 / 1, as data=xarray reads it
        if not numeric or np.issubdtype(var.dtype, np.complexfloating):
            not_numbers.append(f"{name} ({var.dtype})")
            left_out[name] = f"is not a real number ({var.dtype})"
            continue
        others = [str(d) for d in var.dims if d != sample_dim]
        comps = [d for d in others if d in component_dims]
        if len(comps) > 1:
            raise ImportDataError(f"{path}: variable {name!r} has several component dims {comps}; at most one is supported")
        comp = comps[0] if comps else None
        space = [d for d in others if d != comp]
        order = [sample_dim] + ([str(time_dim)] if time_dim and str(time_dim) in space else [])
        order += [d for d in space if d != time_dim]
        out_dims = tuple(rename.get(d, d) for d in order[1:])
        for dim, out in zip(order[1:], out_dims):
            if out not in coords:
                coords[out] = _coord(ds, dim, out, periodic)
                source_names[out] = dim
        attrs = {k: str(v) for k, v in var.attrs.items() if k in ("units", "long_name")}
        if comp is None:
            _offer(path, variables, sources, OutVar(name, out_dims, attrs.get("units", "1"), attrs.get("long_name", "")),
                   (name, tuple(order), None, None))
        else:
            labels = _labels(ds, comp)
            for i, label in enumerate(labels):
                out = f"{name}_{label}"
                _offer(path, variables, sources,
                       OutVar(out, out_dims, attrs.get("units", "1"), attrs.get("long_name", ""),
                              {"field": name, "component": label, "component_dim": comp}),
                       (name, tuple(order) + (comp,), comp, i))
    if not variables:
        ds.close()
        raise NotThisLayout(f"{path}: no numeric variable with the sample dim {sample_dim!r}; found {found}")
    n = int(ds.sizes[sample_dim])
    file_attrs = {str(k): v for k, v in ds.attrs.items()}
    ds.close()

    def read(start: int, stop: int) -> dict[str, np.ndarray]:
        handle = open_source(path)
        try:
            out: dict[str, np.ndarray] = {}
            cache: dict[str, np.ndarray] = {}
            for name, (var, order, comp, index) in sources.items():
                if var not in cache:
                    cache[var] = np.asarray(handle[var].isel({sample_dim: slice(start, stop)}).transpose(*order).values)
                out[name] = cache[var][..., index] if comp is not None else cache[var]
            return out
        finally:
            handle.close()

    sample_bytes = sum(4 * int(np.prod([len(coords[d].values) for d in v.dims])) for v in variables.values())
    pde = str(options.get("pde") or file_attrs.get("pde") or "imported")
    inputs = options.get("inputs") or str(file_attrs.get("inputs", "")).split()
    targets = options.get("targets") or str(file_attrs.get("targets", "")).split()
    layout_key = (tuple((k, v.dims) for k, v in sorted(variables.items())),
                  tuple((k, len(c.values)) for k, c in sorted(coords.items())))
    notes = [f"{path.name}: left out variables without the sample dim {sample_dim!r}: {skipped}"] if skipped else []
    if not_numbers:
        notes.append(f"{path.name}: left out variables that are not real numbers: {', '.join(not_numbers)}")
    part = Part(str(path), n, read, (path,), split, sample_bytes, layout_key)
    attrs = {SOURCE_DIMS_ATTR: json.dumps(source_names, sort_keys=True)}
    return Plan("xarray", pde, variables, coords, list(inputs), list(targets), [part], attrs, notes, left_out)


def _check_dims(path: Path, ds: Any, sample_dim: str, time_dim: Any, rename: Mapping[str, Any]) -> None:
    """Refuse ``dims.time`` or a ``dims.rename`` key that is not a dim of the file (a typo would import the data
    without a time axis, or under the file's dim names, without a word), and renamings that give two dims one name.

    Raises
    ------
    ImportDataError
        Naming the setting, the file and its dims.
    """
    sizes = {str(d): int(n) for d, n in ds.sizes.items()}
    if time_dim and str(time_dim) not in sizes:
        raise ImportDataError(f"{path}: dims.time={str(time_dim)!r} is not a dim of the file; its dims: {sizes}")
    if time_dim and str(time_dim) == sample_dim:
        raise ImportDataError(f"{path}: dims.time and dims.sample are both {sample_dim!r}; expected two different dims")
    unknown = [str(d) for d in rename if str(d) not in sizes]
    if unknown:
        raise ImportDataError(f"{path}: dims.rename names {unknown}, not dims of the file; its dims: {sizes}")
    names: dict[str, str] = {}
    for dim in sizes:
        if dim == sample_dim:
            out = "sample"
        elif time_dim and dim == str(time_dim):
            out = "time"
        else:
            out = str(rename.get(dim, dim))
        if out in names:
            raise ImportDataError(
                f"{path}: dims {names[out]!r} and {dim!r} would both be named {out!r} (dims.sample, dims.time, "
                f"dims.rename); expected one dim per name; its dims: {sizes}"
            )
        names[out] = dim


def _offer(path: Path, variables: dict[str, OutVar], sources: dict[str, Any], var: OutVar, source: Any) -> None:
    """Add an output variable, refusing a name that another variable or vector component already makes (a
    variable ``v_x`` next to a field ``v`` with component ``x``): one would silently replace the other."""
    if var.name in variables:
        raise ImportDataError(
            f"{path}: two variables make the variable {var.name!r}: {_origin(variables[var.name])} and "
            f"{_origin(var)}; expected distinct names (rename one, e.g. ds.rename(...), before importing)"
        )
    variables[var.name] = var
    sources[var.name] = source


def _origin(var: OutVar) -> str:
    if "field" in var.attrs:
        return f"component {var.attrs['component']!r} of {var.attrs['field']!r} (dim {var.attrs['component_dim']!r})"
    return f"variable {var.name!r}"


def _coord(ds: Any, dim: str, out: str, periodic: set[str]) -> OutCoord:
    size = int(ds.sizes[dim])
    attrs: dict[str, Any] = {}
    eps = dtype_eps(np.float64)
    along = dim in ds.coords and ds[dim].dims == (dim,)  # a data variable may share the dim's name, along another dim
    if along and ds[dim].dtype.kind in "Mm" and size:
        values, units = _seconds(np.asarray(ds[dim].values))
        long_name = str(ds[dim].attrs.get("long_name", f"{out} coordinate"))
    elif along and np.issubdtype(ds[dim].dtype, np.number):
        values = np.asarray(ds[dim].values, dtype=np.float64)
        eps = dtype_eps(ds[dim].dtype)
        units = str(ds[dim].attrs.get("units", "1"))
        long_name = str(ds[dim].attrs.get("long_name", f"{out} coordinate"))
        if ds[dim].attrs.get("periodic"):
            attrs["periodic"] = 1
    else:
        values, units, long_name = np.arange(size, dtype=np.float64), "1", f"{out} index"
    if dim in periodic or out in periodic:
        attrs["periodic"] = 1
    return OutCoord(values, units, long_name, attrs, eps)


def _seconds(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Dates (``datetime64``, as xarray decodes a CF time) or durations (``timedelta64``) as float64 seconds with
    their CF units: ``seconds since <the first date>``, or ``s``. The output's coordinates are numbers; dates read as
    ``0 .. n - 1`` would lose the steps between them (hours, or days of unequal months)."""
    if values.dtype.kind == "M":
        origin = values[0].astype("datetime64[ns]")
        offsets = (values.astype("datetime64[ns]") - origin).astype(np.int64)
        return offsets / 1e9, f"seconds since {np.datetime_as_string(origin, unit='auto')}"
    return values.astype("timedelta64[ns]").astype(np.int64) / 1e9, "s"  # as a number, numpy gives nanoseconds


def _labels(ds: Any, dim: str) -> list[str]:
    if dim in ds.coords:
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(ds[dim].values).tolist()]
        if all(v.isidentifier() or v.isalnum() for v in values) and len(set(values)) == len(values):
            return values
    return [str(i) for i in range(int(ds.sizes[dim]))]

