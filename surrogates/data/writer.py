"""Write one dataset file atomically: a temporary file in the same folder, renamed when complete.

A file can also be left complete under its temporary name (``write_dataset(..., publish=False)``,
:meth:`StreamingDatasetWriter.finish`) and published later together with the other files of its
dataset (:func:`~surrogates.data.publishing.publish_files`): ``overwrite=true`` keeps the previous dataset whole
until the new one is. The temporary names and their cleanup are in :mod:`surrogates.data.temporaries`.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.checksummed_chunks import chunk_writer
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
    file_attrs = _file_attrs(path, attrs, variables)
    arrays, n_samples = _checked_fields(path, fields, variables, coords)
    coord_arrays = _checked_coords(path, coords, variables, n_samples)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        _write(tmp, arrays, variables, coord_arrays, coords, file_attrs, n_samples)
        _fsync(tmp)
        if path.exists() and not overwrite:  # appeared while we were writing
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if not publish:
            return tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _file_attrs(path: Path, attrs: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    out["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
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


def _checked_coords(
    path: Path, coords: Mapping[str, Any], variables: Mapping[str, Any], n_samples: int
) -> dict[str, np.ndarray]:
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
            var = f.create_variable(name, (name,), dtype=COORD_DTYPE, data=values, **_CHECKSUM)
            _set_meta(var, coords[name])
            for key, value in (getattr(coords[name], "attrs", None) or {}).items():
                var.attrs[key] = value
        for name in sorted(arrays):
            dims = (SAMPLE_DIM, *variables[name].dims)
            values = arrays[name]
            # One sample per chunk: a DataLoader reading sample i touches exactly one chunk.
            chunks = (1, *values.shape[1:]) if values.ndim > 1 and n_samples > 0 else None
            var = f.create_variable(name, dims, dtype=FIELD_DTYPE, chunks=chunks, **_CHECKSUM)
            if n_samples:
                var[...] = values
            _set_meta(var, variables[name])
        for key, value in attrs.items():
            f.attrs[key] = value


# A Fletcher-32 checksum per chunk, and NaN as the fill value: a chunk whose bytes changed on disk fails to
# read, and a chunk the damaged index no longer finds reads as NaN instead of zeros, so inspect_file (which
# reads every chunk when it checks finiteness) refuses the file instead of training on other numbers.
_CHECKSUM = {"fletcher32": True, "fillvalue": np.nan}


def _set_meta(var: Any, spec: Any) -> None:
    var.attrs["units"] = str(getattr(spec, "units", "1") or "1")
    long_name = getattr(spec, "long_name", "")
    if long_name:
        var.attrs["long_name"] = str(long_name)


def _fsync(path: Path) -> None:
    """Flush the closed file to disk so that the rename never publishes a partially persisted file."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


WRITEBACK_BYTES = 32 * 2**20
""":class:`StreamingDatasetWriter` asks the kernel to start writing a file's dirty pages to disk every time this
many bytes of samples were written to it."""

GATHERED_SCALAR_BYTES = 64 * 2**20
"""Per-sample scalars of a file up to this size are kept in memory by :class:`StreamingDatasetWriter` and written
at :meth:`~StreamingDatasetWriter.commit` in one call (larger ones are written block by block)."""

_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the dirty pages in the range, do not wait for it


@functools.cache
def _writeback_starter() -> Callable[[int], None] | None:
    """``start(fd)``: begin the writeback of every dirty page of the open file ``fd`` without waiting for it
    (Linux ``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)``); ``None`` where the C library lacks it.

    Below the kernel's dirty-page thresholds (gigabytes on a machine with a lot of memory) nothing is written
    until the final fsync, which then waits for the whole file while the CPU idles; started every
    :data:`WRITEBACK_BYTES`, the disk writes while the samples are read, checked and encoded, and the fsync
    before the rename finds little left. It guarantees nothing by itself: durability still comes from that fsync.
    """
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, TypeError):  # not Linux / glibc: the final fsync does all the writing
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start(fd: int) -> None:
        function(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # a failure (e.g. EIO) shows again at the fsync, which raises

    return start


def _write_rows(dataset: Any, start: int, values: np.ndarray) -> None:
    """``dataset[start : start + len(values)] = values`` for an h5py dataset (``values``: ``(count, *shape)``,
    ``count >= 1``), through h5py's low-level API: its ``__setitem__`` spends about 0.1 ms of Python on the selection
    of every call, as long as the write of a sample itself, and an import writes many short runs of rows."""
    from h5py import h5s

    if not hasattr(dataset, "id") or not hasattr(dataset.id, "get_space"):  # not an h5py dataset
        dataset[start : start + len(values)] = values
        return
    values = np.ascontiguousarray(values)
    file_space = dataset.id.get_space()
    file_space.select_hyperslab((start,) + (0,) * (values.ndim - 1), values.shape)
    dataset.id.write(h5s.create_simple(values.shape), file_space, values)


class StreamingDatasetWriter:
    """Write a dataset file block by block, atomically: for data larger than memory.

    The file is created under :func:`temporary_path` with every variable at its final size (float32,
    one sample per chunk, like :func:`write_dataset`); :meth:`write` fills a block of samples (shapes
    and finiteness checked, as by :func:`write_dataset`); :meth:`commit` closes, flushes and renames
    the file onto ``path``. Leaving the ``with`` block without :meth:`commit` (an error, a signal)
    removes the temporary file, so a file at ``path`` is always complete. Every :data:`WRITEBACK_BYTES` of
    samples, the kernel is asked to start writing the file to disk (where it can, :func:`_writeback_starter`),
    so that the disk works while the next blocks are prepared instead of all at once in the final fsync.
    Field chunks are stored with their checksums computed here where that gives HDF5's bytes
    (:mod:`surrogates.data.checksummed_chunks`), and per-sample scalars are gathered and written at :meth:`commit`
    (:data:`GATHERED_SCALAR_BYTES`).

    Examples
    --------
    >>> with StreamingDatasetWriter(path, n, variables, coords, attrs) as out:  # doctest: +SKIP
    ...     for start, block in blocks:   # block: name -> (count, *dims) array
    ...         out.write(start, block)
    ...     out.commit()
    """

    def __init__(
        self,
        path: str | Path,
        n_samples: int,
        variables: Mapping[str, Any],
        coords: Mapping[str, Any],
        attrs: Mapping[str, Any],
        overwrite: bool = False,
        variable_attrs: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it")
        self.overwrite = overwrite
        self.n_samples = int(n_samples)
        self.variables = dict(variables)
        if not self.variables:
            raise DatasetFileError(self.path, "no variables to write")
        self.attrs = _file_attrs(self.path, attrs, self.variables)
        self.coords = dict(coords)
        self.coord_arrays = _checked_coords(self.path, self.coords, self.variables, self.n_samples)
        self.shapes: dict[str, tuple[int, ...]] = {}
        for name, spec in self.variables.items():
            dims = tuple(spec.dims)
            if SAMPLE_DIM in dims:
                raise DatasetFileError(self.path, f"variable {name!r}: dims {dims} must not include 'sample' (it is implied)")
            missing = [dim for dim in dims if dim not in self.coord_arrays]
            if missing:
                raise DatasetFileError(
                    self.path, f"variable {name!r} has dim(s) {missing} without a coordinate (coordinates: {sorted(coords)})"
                )
            self.shapes[name] = tuple(len(self.coord_arrays[dim]) for dim in dims)
        self.variable_attrs = {name: dict(extra) for name, extra in (variable_attrs or {}).items()}
        self.tmp = temporary_path(self.path)
        self._file: Any = None
        self._vars: dict[str, Any] = {}
        # per variable, the writer of whole checksummed chunks where it applies (None: rows go through HDF5)
        self._chunk_writers: dict[str, Callable[[int, np.ndarray], None] | None] = {}
        # per-sample scalars ((sample,) variables, 4 bytes a sample) are gathered here and written once at commit:
        # an import writes them in as many short runs as the fields, and each HDF5 write costs ~0.1 ms of calls
        gather = self.n_samples * np.dtype(FIELD_DTYPE).itemsize <= GATHERED_SCALAR_BYTES
        self._scalars: dict[str, np.ndarray] = {
            name: np.full(self.n_samples, np.nan, FIELD_DTYPE) for name, shape in self.shapes.items() if shape == () and gather
        }
        self._written = 0
        self._writeback_fd: int | None = None  # a descriptor of the temporary file, to start its writeback
        self._unflushed = 0  # bytes of samples written since the last start of the writeback

    def __enter__(self) -> StreamingDatasetWriter:
        import h5netcdf

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # no chunk cache: blocks are whole chunks written once; a cache would only hold copies of them
            self._file = h5netcdf.File(self.tmp, "w", rdcc_nbytes=0)
            f = self._file
            f.dimensions = {SAMPLE_DIM: self.n_samples, **{name: len(v) for name, v in self.coord_arrays.items()}}
            for name, values in self.coord_arrays.items():
                var = f.create_variable(name, (name,), dtype=COORD_DTYPE, data=values, **_CHECKSUM)
                _set_meta(var, self.coords[name])
                for key, value in (getattr(self.coords[name], "attrs", None) or {}).items():
                    var.attrs[key] = value
            for name in sorted(self.variables):
                shape = self.shapes[name]
                chunks = (1, *shape) if shape and self.n_samples > 0 else None
                dims = (SAMPLE_DIM, *self.variables[name].dims)
                var = f.create_variable(name, dims, dtype=FIELD_DTYPE, chunks=chunks, **_CHECKSUM)
                _set_meta(var, self.variables[name])
                for key, value in self.variable_attrs.get(name, {}).items():
                    var.attrs[key] = value
                # blocks go to the h5py dataset under the variable (as serve.codecs reads it): h5netcdf's own
                # __setitem__ looks the variable's dtype up in the file on every call, milliseconds per block
                self._vars[name] = getattr(var, "_h5ds", var)
                self._chunk_writers[name] = chunk_writer(self._vars[name], FIELD_DTYPE)
            for key, value in self.attrs.items():
                f.attrs[key] = value
            if _writeback_starter() is not None:
                self._writeback_fd = os.open(self.tmp, os.O_RDONLY)
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, start: int, fields: Mapping[str, np.ndarray]) -> None:
        """Store ``fields[name]`` (``(count, *dims)``) at samples ``start .. start + count`` of every variable."""
        if set(fields) != set(self.variables):
            raise DatasetFileError(self.path, f"block has variables {sorted(fields)}, expected {sorted(self.variables)}")
        counts = {int(np.shape(values)[0]) for values in fields.values()}
        if len(counts) != 1:
            raise DatasetFileError(self.path, f"block at sample {start} has variables of different sample counts {sorted(counts)}")
        count = counts.pop()
        if start < 0 or start + count > self.n_samples:
            raise DatasetFileError(self.path, f"block of {count} samples at {start} exceeds the {self.n_samples} samples")
        for name in sorted(fields):
            with np.errstate(over="ignore"):
                values = np.asarray(fields[name]).astype(FIELD_DTYPE, copy=False)
            if values.shape[1:] != self.shapes[name]:
                raise DatasetFileError(
                    self.path, f"variable {name!r} block has shape {values.shape}, expected (n, {', '.join(map(str, self.shapes[name]))})"
                )
            finite = np.isfinite(values).reshape(count, -1).all(axis=1) if values.size else np.ones(count, bool)
            if not finite.all():
                bad = start + np.flatnonzero(~finite)
                raise DatasetFileError(
                    self.path, f"variable {name!r} has NaN or inf values (as float32) at sample(s) "
                    f"{', '.join(map(str, bad[:10]))}{' ...' if bad.size > 10 else ''}; nothing was written"
                )
            if name in self._scalars:
                self._scalars[name][start : start + count] = values
            elif count and self._chunk_writers.get(name) is not None:
                self._chunk_writers[name](start, values)
            elif count:
                _write_rows(self._vars[name], start, values)
            self._unflushed += values.nbytes
        self._written += count
        if self._writeback_fd is not None and self._unflushed >= WRITEBACK_BYTES:
            self._unflushed = 0
            _writeback_starter()(self._writeback_fd)

    def update_attrs(self, attrs: Mapping[str, str]) -> None:
        """Replace string attributes given at construction, before :meth:`commit`: for values known only once the
        data are written (the importer's source checksums, computed alongside). Until then the file is a temporary."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown or not all(isinstance(value, str) for value in attrs.values()):
            raise DatasetFileError(self.path, f"update_attrs replaces the string attributes given at construction, got {sorted(attrs)}")
        for key, value in attrs.items():
            self._file.attrs[key] = value
            self.attrs[key] = value

    def commit(self) -> Path:
        """Close the temporary file and rename it onto ``path`` (every sample must have been written once)."""
        self.finish()
        return self.publish()

    def finish(self) -> Path:
        """Close and flush the temporary file, complete but not yet published; returns its path (:attr:`tmp`).

        Leaving the ``with`` block before :meth:`publish` still removes it;
        :func:`~surrogates.data.publishing.publish_files` can rename the finished files of several writers together
        instead.
        """
        if self._written != self.n_samples:
            raise DatasetFileError(self.path, f"{self._written} of {self.n_samples} samples were written; nothing was published")
        for name, values in self._scalars.items():
            if values.size:
                _write_rows(self._vars[name], 0, values)
        self._file.close()
        self._file = None
        self._close_writeback()
        _fsync(self.tmp)
        return self.tmp

    def publish(self) -> Path:
        """Rename the finished temporary file onto ``path``."""
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it")
        os.replace(self.tmp, self.path)
        return self.path

    def _close_writeback(self) -> None:
        if self._writeback_fd is not None:
            os.close(self._writeback_fd)
            self._writeback_fd = None

    def _abort(self) -> None:
        self._close_writeback()
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # closing a half-written file may fail; it is removed anyway
                pass
            self._file = None
        self.tmp.unlink(missing_ok=True)

    def __exit__(self, *exc: Any) -> None:
        self._abort()  # after commit the temporary file is gone: nothing to do
