"""Write a dataset file block by block, atomically: :class:`StreamingDatasetWriter`, for data larger than memory.

The file is the one :func:`~surrogates.data.writer.write_dataset` writes (same checks, dtypes, chunks and
checksums, shared with that module); what is particular here is the order of the work: samples arrive in blocks,
the kernel is asked to write them to disk while the next blocks are prepared, and the file stays under its
temporary name until :meth:`StreamingDatasetWriter.commit` (or :meth:`~StreamingDatasetWriter.finish` and
:func:`~surrogates.data.publishing.publish_files`).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from surrogates.data.checksummed_chunks import chunk_writer
from surrogates.data.schema import SAMPLE_DIM, DatasetFileError
from surrogates.data.temporaries import temporary_path
# the file format's pieces, shared with the writer of whole files
from surrogates.data.writer import CHECKSUM, COORD_DTYPE, FIELD_DTYPE, checked_coords, checked_file_attrs, fsync_file, set_meta


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
        self.attrs = checked_file_attrs(self.path, attrs, self.variables)
        self.coords = dict(coords)
        self.coord_arrays = checked_coords(self.path, self.coords, self.variables, self.n_samples)
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
                var = f.create_variable(name, (name,), dtype=COORD_DTYPE, data=values, **CHECKSUM)
                set_meta(var, self.coords[name])
                for key, value in (getattr(self.coords[name], "attrs", None) or {}).items():
                    var.attrs[key] = value
            for name in sorted(self.variables):
                shape = self.shapes[name]
                chunks = (1, *shape) if shape and self.n_samples > 0 else None
                dims = (SAMPLE_DIM, *self.variables[name].dims)
                var = f.create_variable(name, dims, dtype=FIELD_DTYPE, chunks=chunks, **CHECKSUM)
                set_meta(var, self.variables[name])
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
        fsync_file(self.tmp)
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
