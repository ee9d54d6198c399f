"""The analysis view of a dataset: a split as one ``xarray.Dataset`` with named dims and coordinates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from surrogates.data.read_limits import machine_memory
from surrogates.data.schema import SAMPLE_DIM, inspect_file
from surrogates.data.shards import check_same_coordinates, split_files


def open_split(data_dir: str | Path, split: str, max_bytes: int | None = -1) -> "xarray.Dataset":  # noqa: F821
    """Open a split with xarray (engine ``h5netcdf``), concatenating its shards along ``"sample"``.

    Parameters
    ----------
    data_dir
        The dataset folder.
    split
        ``"train"``, ``"val"``, ``"test"``, ...
    max_bytes
        The most bytes a sharded split may load into memory (its variables' decoded size); by default
        half of the memory this process may use (physical memory, address-space and cgroup limits:
        :func:`~surrogates.data.read_limits.machine_memory`), ``None`` for no limit. A single-file split is opened
        lazily and is not limited.

    Returns
    -------
    xarray.Dataset
        Variables such as ``a (sample, x, y)`` with coordinates ``x``, ``y`` (with ``units``) and
        the file attributes. A single-file split is opened lazily (close it, or use it in a
        ``with`` block, when done); a sharded split is concatenated in memory and its files are
        closed. The attributes are those of the first shard without ``shard``, except
        ``solver_report``, which sums the shards' (:func:`combined_solver_report`); ``source_files``
        lists the files.

    Raises
    ------
    FileNotFoundError
        If the split is missing or incomplete (see :func:`~surrogates.data.shards.split_files`).
    DatasetFileError
        If a file does not follow the schema, holds another part of the data than its name says, or has
        other coordinate values than the first shard (:func:`~surrogates.data.shards.check_same_coordinates`).
    MemoryError
        If a sharded split holds more than ``max_bytes``; nothing is loaded then.
    """
    import xarray as xr

    files = split_files(data_dir, split)
    for path in files:
        inspect_file(path, check_finite=False)
    if len(files) == 1:
        ds = xr.open_dataset(files[0], engine="h5netcdf")
        ds.attrs["source_files"] = files[0].name
        return ds
    parts = [xr.open_dataset(path, engine="h5netcdf") for path in files]
    try:
        _check_loadable(parts, files, max_bytes)
        grids = [_grid(part) for part in parts]
        for path, grid in zip(files[1:], grids[1:]):  # named, instead of xarray's alignment error
            check_same_coordinates(files[0], grids[0], path, grid)
        combined = xr.concat(
            parts, dim=SAMPLE_DIM, data_vars="minimal", coords="minimal", compat="override",
            join="exact", combine_attrs="override",
        ).load()
    finally:
        for part in parts:
            part.close()
    combined.attrs.pop("shard", None)
    combined.attrs["solver_report"] = json.dumps(
        combined_solver_report([json.loads(part.attrs.get("solver_report") or "{}") for part in parts])
    )
    combined.attrs["source_files"] = " ".join(path.name for path in files)
    return combined


def _check_loadable(parts: list, files: list[Path], max_bytes: int | None) -> None:
    """Refuse to load shards whose variables decode to more than ``max_bytes`` (-1: half the memory this process may
    use, :func:`~surrogates.data.read_limits.machine_memory`):
    the concatenation holds them all in memory at once, so a large split would exhaust it."""
    if max_bytes is None:
        return
    if max_bytes == -1:
        max_bytes = machine_memory() // 2
    # what the concatenation holds: the per-sample variables of every file, the grid's coordinates once
    total = sum(int(var.nbytes) for part in parts for var in part.variables.values() if SAMPLE_DIM in var.dims)
    total += sum(int(var.nbytes) for var in parts[0].variables.values() if SAMPLE_DIM not in var.dims)
    if total > max_bytes:
        raise MemoryError(
            f"the {len(files)} files of this split hold {total / 2**30:.2f} GiB, more than max_bytes="
            f"{max_bytes / 2**30:.2f} GiB (by default half the memory this process may use), and open_split loads a "
            f"sharded split into memory; open its files one at a time (surrogates.data.split_files lists them) "
            f"with xarray.open_dataset(path, engine='h5netcdf'), or pass max_bytes=None to load it anyway"
        )


def _grid(ds: "xarray.Dataset") -> dict[str, Any]:  # noqa: F821
    """The coordinates of a dataset that are not per sample (``x``, ``y``, ``time``): name -> values."""
    return {name: coord.values for name, coord in ds.coords.items() if SAMPLE_DIM not in coord.dims}


def combined_solver_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``solver_report`` for the shards of a split: solves summed, maxima of maxima, means weighted by solves.

    Settings (tolerances, time steps) are taken from the first shard; a setting that differs
    between shards becomes the list of the shards' values, so nothing is hidden.
    """
    reports = [r for r in reports if r]
    if not reports:
        return {}
    out: dict[str, Any] = dict(reports[0])
    solves = [int(r.get("solves", 0)) for r in reports]
    for key in set().union(*reports) - {"solves", "iterations_max", "iterations_mean", "residual_max"}:
        values = [r.get(key) for r in reports]
        if any(v != values[0] for v in values):
            out[key] = values
    out["solves"] = sum(solves)
    for key in ("iterations_max", "residual_max"):
        if all(key in r for r in reports):
            out[key] = max(r[key] for r in reports)
    if all("iterations_mean" in r for r in reports) and sum(solves):
        out["iterations_mean"] = sum(r["iterations_mean"] * n for r, n in zip(reports, solves)) / sum(solves)
    return out
