"""The analysis view of a dataset: a split as one ``xarray.Dataset`` with named dims and coordinates."""

from __future__ import annotations

from pathlib import Path

from surrogates.data.schema import SAMPLE_DIM, inspect_file
from surrogates.data.shards import split_files


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
        closed. The attributes are those of the first shard without ``shard``; ``source_files``
        lists the files.

    Raises
    ------
    FileNotFoundError
        If the split is missing or incomplete (see :func:`~surrogates.data.shards.split_files`).
    DatasetFileError
        If a file does not follow the schema.
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
        combined = xr.concat(
            parts, dim=SAMPLE_DIM, data_vars="minimal", coords="minimal", compat="override",
            join="exact", combine_attrs="override",
        ).load()
    finally:
        for part in parts:
            part.close()
    combined.attrs.pop("shard", None)
    combined.attrs["source_files"] = " ".join(path.name for path in files)
    return combined
