"""Write one dataset file atomically: a temporary file in the same folder, renamed when complete.

A file can also be left complete under its temporary name (``write_dataset(..., publish=False)``,
:meth:`~surrogates.data.streaming_writer.StreamingDatasetWriter.finish`) and published later together with the
other files of its dataset (:func:`~surrogates.data.publishing.publish_files`): ``overwrite=true`` keeps the previous
dataset whole until the new one is. The temporary names and their cleanup are in :mod:`surrogates.data.temporaries`;
a file written block by block, for data larger than memory, in :mod:`surrogates.data.streaming_writer`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.schema import REQUIRED_ATTRS, SAMPLE_DIM, SCHEMA_VERSION, DatasetFileError, missing_provenance
from surrogates.data.temporaries import temporary_path

FIELD_DTYPE = np.float32
COORD_DTYPE = np.float64


def write_dataset(
    path: str | Path,
    fields: Mapping[str, np.ndarray],
    variables: Mapping[str, Any],
    coords: Mapping[str, Any],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
    publish: bool = True,
) -> Path:
    """Write a dataset file (schema :data:`~surrogates.data.schema.SCHEMA_VERSION`) atomically.

    The file is written to :func:`temporary_path` and renamed onto ``path`` (``os.replace``) only
    after it was closed successfully, so an interrupted run never leaves a file that looks
    complete; on any error the temporary file is removed and nothing else is touched.

    Parameters
    ----------
    path
        Destination, e.g. ``datasets/darcy_64/train.h5``; the folder is created if needed.
    fields
        One array per variable, shape ``(n_samples, *variables[name].dims sizes)``; stored as
        float32, one sample per HDF5 chunk (per-sample scalars ``(n_samples,)`` are contiguous),
        uncompressed.
    variables
        Variable-like objects (duck-typed :class:`surrogates.pdes.base.Variable`): ``dims`` without
        the leading ``"sample"`` (``()`` for per-sample scalars), ``units``, ``long_name``.
        Must have the same names as ``fields``. An empty ``fields`` mapping writes a file with zero
        samples (e.g. the shard of a split that has fewer generation chunks than shards).
    coords
        Coordinate-like objects (duck-typed :class:`surrogates.pdes.base.Coordinate`): 1D
        ``values`` (stored as float64), ``units``, ``long_name`` and extra ``attrs``. Every dim of
        every variable (except ``"sample"``) needs one.
    attrs
        File attributes: str, int, float or bool (stored as int). ``schema_version`` and ``created``
        are filled in when absent; the other :data:`~surrogates.data.schema.REQUIRED_ATTRS`
        (``pde``, ``inputs``, ``targets``) must be given, with one set of
        :data:`~surrogates.data.schema.PROVENANCE_ATTRS` (generated: ``config``, ``solver_report``,
        ``seed``; imported: ``source``, ``source_sha256``, ``import_config``).
    overwrite
        Replace an existing file at ``path``.
    publish
        ``False``: leave the complete, flushed file under :func:`temporary_path` and return that path; the
        caller renames it (:func:`~surrogates.data.publishing.publish_files`) or removes it.

    Returns
    -------
    Path
        ``path``, or its temporary path when ``publish`` is false.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    DatasetFileError
        If a field has non-finite values (the message names the variable and sample indices), a
        shape does not match its dims and coordinates, or a required attribute is missing. Nothing
        is written in these cases.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    file_attrs = checked_file_attrs(path, attrs, variables)
    arrays, n_samples = _checked_fields(path, fields, variables, coords)
    coord_arrays = checked_coords(path, coords, variables, n_samples)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        _write(tmp, arrays, variables, coord_arrays, coords, file_attrs, n_samples)
        fsync_file(tmp)
        if path.exists() and not overwrite:  # appeared while we were writing
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if not publish:
            return tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def created_now() -> str:
    """The ``created`` attribute of a file written now: UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def checked_file_attrs(path: Path, attrs: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """The file attributes to write: ``attrs`` as plain str / int / float values with ``schema_version``, required
    ones first; refused (:class:`DatasetFileError`) when one is missing or names unknown variables."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    out["created"] = created_now()
    for key, value in attrs.items():
        if isinstance(value, bool | np.bool_):
            value = int(value)
        elif isinstance(value, Integral):
            value = int(value)
        elif isinstance(value, Real):
            value = float(value)
        elif not isinstance(value, str):
            raise DatasetFileError(
                path,
                f"attribute {key!r} is a {type(value).__name__}; attributes must be str, int, float or bool "
                "(serialize structures with json.dumps or yaml.safe_dump)",
            )
        out[str(key)] = value
    if str(out["schema_version"]) != SCHEMA_VERSION:
        raise DatasetFileError(
            path, f"this writer writes schema_version {SCHEMA_VERSION}, not {out['schema_version']!r}"
        )
    missing = [key for key in REQUIRED_ATTRS if key not in out]
    if missing:
        raise DatasetFileError(path, f"missing required attribute(s) {missing}; nothing was written")
    provenance = missing_provenance(out)
    if provenance:
        raise DatasetFileError(path, f"no provenance attributes: {provenance}; nothing was written")
    out = {**{key: out[key] for key in REQUIRED_ATTRS}, **out}  # required ones first, in a fixed order
    for role in ("inputs", "targets"):
        unknown = [name for name in str(out[role]).split() if name not in variables]
        if unknown or not str(out[role]).split():
            raise DatasetFileError(
                path,
                f"attribute {role}={out[role]!r} must name variables among {sorted(variables)}; nothing was written",
            )
    return out


def _checked_fields(
    path: Path, fields: Mapping[str, np.ndarray], variables: Mapping[str, Any], coords: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], int]:
    if not fields and variables:
        # No samples at all (e.g. a shard of a split with fewer chunks than shards): zero-length arrays.
        fields = {name: np.zeros((0, *_sizes(variables[name].dims, coords))) for name in variables}
    if set(fields) != set(variables):
        raise DatasetFileError(
            path,
            f"fields {sorted(fields)} and variables {sorted(variables)} must have the same names; nothing was written",
        )
    if not fields:
        raise DatasetFileError(path, "no variables to write")
    counts = {name: int(np.shape(fields[name])[0]) if np.ndim(fields[name]) else 0 for name in sorted(fields)}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise DatasetFileError(path, f"fields have different numbers of samples ({listed}); nothing was written")
    n_samples = next(iter(counts.values()))
    arrays: dict[str, np.ndarray] = {}
    for name in sorted(fields):
        dims = tuple(variables[name].dims)
        if SAMPLE_DIM in dims:
            raise DatasetFileError(path, f"variable {name!r}: dims {dims} must not include 'sample' (it is implied)")
        values = np.asarray(fields[name])
        if np.iscomplexobj(values):
            raise DatasetFileError(path, f"variable {name!r} is complex; store real and imaginary parts separately")
        expected_spatial = []
        for dim in dims:
            if dim not in coords:
                raise DatasetFileError(
                    path, f"variable {name!r} has dim {dim!r} but no coordinate {dim!r} was given "
                    f"(coordinates: {sorted(coords)})"
                )
            expected_spatial.append(len(np.asarray(coords[dim].values).reshape(-1)))
        if values.ndim != len(dims) + 1 or list(values.shape[1:]) != expected_spatial:
            raise DatasetFileError(
                path,
                f"variable {name!r} has shape {values.shape}, expected (sample, {', '.join(dims)}) = "
                f"(n, {', '.join(map(str, expected_spatial))}); nothing was written",
            )
        with np.errstate(over="ignore"):
            values = values.astype(FIELD_DTYPE, copy=False)  # values beyond float32's range become inf here
        finite = np.isfinite(values).reshape(values.shape[0], -1).all(axis=1) if values.size else np.ones(0, bool)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            listed = ", ".join(map(str, bad[:10])) + (f", ... ({bad.size} in all)" if bad.size > 10 else "")
            raise DatasetFileError(
                path, f"variable {name!r} has NaN or inf values (as float32) at sample(s) {listed}; nothing was written"
            )
        arrays[name] = values
    return arrays, n_samples


def _sizes(dims: tuple[str, ...], coords: Mapping[str, Any]) -> list[int]:
    """Lengths of the coordinates of ``dims`` (dims without a coordinate are skipped; checked later)."""
    return [np.asarray(coords[dim].values).size for dim in dims if dim in coords]


def checked_coords(
    path: Path, coords: Mapping[str, Any], variables: Mapping[str, Any], n_samples: int
) -> dict[str, np.ndarray]:
    """The coordinates' values as 1D finite float64 arrays, refused (:class:`DatasetFileError`) otherwise."""
    out = {}
    for name, coord in coords.items():
        values = np.asarray(coord.values, dtype=COORD_DTYPE)
        if values.ndim != 1:
            raise DatasetFileError(path, f"coordinate {name!r} must be 1D, got shape {values.shape}")
        if not np.isfinite(values).all():
            raise DatasetFileError(path, f"coordinate {name!r} has NaN or inf values; nothing was written")
        if name == SAMPLE_DIM and len(values) != n_samples:
            raise DatasetFileError(path, f"coordinate 'sample' has {len(values)} values for {n_samples} samples")
        if name in variables:
            raise DatasetFileError(path, f"{name!r} is both a variable and a coordinate")
        out[name] = values
    return out


def _write(
    tmp: Path,
    arrays: Mapping[str, np.ndarray],
    variables: Mapping[str, Any],
    coord_arrays: Mapping[str, np.ndarray],
    coords: Mapping[str, Any],
    attrs: Mapping[str, Any],
    n_samples: int,
) -> None:
    import h5netcdf

    with h5netcdf.File(tmp, "w") as f:
        f.dimensions = {SAMPLE_DIM: n_samples, **{name: len(values) for name, values in coord_arrays.items()}}
        for name, values in coord_arrays.items():
            var = f.create_variable(name, (name,), dtype=COORD_DTYPE, data=values, **CHECKSUM)
            set_meta(var, coords[name])
            for key, value in (getattr(coords[name], "attrs", None) or {}).items():
                var.attrs[key] = value
        for name in sorted(arrays):
            dims = (SAMPLE_DIM, *variables[name].dims)
            values = arrays[name]
            # One sample per chunk: a DataLoader reading sample i touches exactly one chunk.
            chunks = (1, *values.shape[1:]) if values.ndim > 1 and n_samples > 0 else None
            var = f.create_variable(name, dims, dtype=FIELD_DTYPE, chunks=chunks, **CHECKSUM)
            if n_samples:
                var[...] = values
            set_meta(var, variables[name])
        for key, value in attrs.items():
            f.attrs[key] = value


# A Fletcher-32 checksum per chunk, and NaN as the fill value: a chunk whose bytes changed on disk fails to
# read, and a chunk the damaged index no longer finds reads as NaN instead of zeros, so inspect_file (which
# reads every chunk when it checks finiteness) refuses the file instead of training on other numbers.
CHECKSUM = {"fletcher32": True, "fillvalue": np.nan}


def set_meta(var: Any, spec: Any) -> None:
    """A variable's ``units`` (``"1"`` by default) and ``long_name`` attributes from its spec."""
    var.attrs["units"] = str(getattr(spec, "units", "1") or "1")
    long_name = getattr(spec, "long_name", "")
    if long_name:
        var.attrs["long_name"] = str(long_name)


def fsync_file(path: Path) -> None:
    """Flush the closed file to disk so that the rename never publishes a partially persisted file."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
