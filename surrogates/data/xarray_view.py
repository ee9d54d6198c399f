"""The analysis view of a dataset: a split as one ``xarray.Dataset`` with named dims and coordinates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from surrogates.data.schema import SAMPLE_DIM, inspect_file
from surrogates.data.shards import check_same_coordinates, split_files


def open_split(data_dir: str | Path, split: str) -> "xarray.Dataset":  # noqa: F821
    """Open a split with xarray (engine ``h5netcdf``), concatenating its shards along ``"sample"``.

    Parameters
    ----------
    data_dir
        The dataset folder.
    split
        ``"train"``, ``"val"``, ``"test"``, ...

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
