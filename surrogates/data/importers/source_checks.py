"""What the importer checks in a source's header before it reads any data.

Once per source file (:func:`surrogates.data.importers.planning.plan_file`):

1. before a layout reads anything (:func:`checked_source_header`, on the handle that recognises the layout): an
   HDF5 / NetCDF-4 source whose data live in other files (external links, external raw storage, virtual
   datasets) is refused, since the recorded ``source_sha256`` would not cover those bytes
   (:mod:`surrogates.data.hdf5_storage`); so is a dataset that declares data it does not hold, or a 1-D one
   (coordinates, times: the layouts read them whole while planning) larger than a reader may hold
   (:mod:`surrogates.data.read_limits`);
2. once the plan is made (:func:`check_source_reads`): reading one block of samples of every variable stays within
   :func:`~surrogates.data.read_limits.read_problem`'s bounds: HDF5 datasets from their header, variables of
   other formats xarray opens (zarr, NetCDF-3) from their encoding.

Every refusal is an :class:`~surrogates.data.importers.plan.ImportDataError` naming the file and the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.hdf5_storage import checked_header
from surrogates.data.importers.plan import ImportDataError, Plan
from surrogates.data.read_limits import StoredArray, read_problem, unwritten_problem

__all__ = ["check_source_reads", "checked_source_header"]


def _refused(path: Path, problem: str) -> ImportDataError:
    return ImportDataError(f"{path}: {problem}")


def checked_source_header(handle: Any, path: Path) -> dict[str, StoredArray]:
    """The header facts of every dataset of an open HDF5 source, after refusing data stored elsewhere, datasets
    declared but never written, and 1-D datasets (coordinates, times: the layouts read them whole while they plan)
    too large to read at once."""
    arrays = checked_header(handle, path, _refused)
    for array in arrays.values():
        problem = read_problem(array, None) if len(array.shape) <= 1 else unwritten_problem(array)
        if problem:
            raise _refused(path, problem)
    return arrays


def check_source_reads(
    path: Path, plan: Plan, arrays: Mapping[str, StoredArray] | None, block: int, sample_dim: str = "sample"
) -> None:
    """Refuse a source when reading ``block`` samples at a time decodes or holds too much
    (:func:`~surrogates.data.read_limits.read_problem`).

    ``arrays``: the header of an HDF5 source (:func:`checked_source_header`), ``None`` for other formats. The
    sample axis of an HDF5 dataset is its first when its length is the part's sample count (PDEBench and The
    Well store samples first; a dataset of another length, e.g. one group's ``data`` of a per-sample layout, is
    read whole); the xarray layout names it (``sample_dim``) and its variables are looked up by dims.
    """
    n = sum(part.n_samples for part in plan.parts)
    if plan.layout == "xarray":
        checks = _xarray_arrays(path, arrays, sample_dim)
    else:
        checks = [(array, 0 if array.shape[:1] == (n,) and n > 0 else None) for array in (arrays or {}).values()]
    for array, axis in checks:
        count = min(block, n) if axis is not None else 1
        hint = ""
        if axis is not None and array.chunks:
            hint = f", or set chunk_size to a multiple of {array.chunks[axis]} (blocks of whole chunks)"
        problem = read_problem(array, axis, max(count, 1), alternative=hint)
        if problem:
            raise _refused(path, problem)


def _xarray_arrays(
    path: Path, arrays: Mapping[str, StoredArray] | None, sample_dim: str
) -> list[tuple[StoredArray, int | None]]:
    """Every data variable with the sample dim, as stored (the HDF5 header when there is one, else xarray's
    encoding), with its sample axis."""
    from surrogates.data.importers.xarray_layout import open_source

    out = []
    with open_source(path) as ds:
        for name, var in ds.data_vars.items():
            dims = [str(d) for d in var.dims]
            if sample_dim not in dims:
                continue
            array = (arrays or {}).get(str(name)) or _encoded_array(str(name), var)
            if array.shape == tuple(int(n) for n in var.shape):
                out.append((array, dims.index(sample_dim)))
    return out


def _encoded_array(name: str, var: Any) -> StoredArray:
    """A variable of a zarr store or NetCDF-3 file as stored: its encoding's chunks (none: contiguous)."""
    shape = tuple(int(n) for n in var.shape)
    chunks = var.encoding.get("chunksizes") or var.encoding.get("chunks")
    chunks = tuple(int(c) for c in chunks) if chunks and len(chunks) == len(shape) else None
    stored = np.dtype(var.encoding.get("dtype", var.dtype))
    itemsize = max(int(stored.itemsize), int(np.dtype(var.dtype).itemsize), 1)
    return StoredArray(name, shape, str(var.dtype), itemsize, chunks)
