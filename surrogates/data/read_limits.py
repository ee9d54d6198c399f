"""What reading one sample of a stored variable costs, checked from the header before any data is read.

A small file can declare far more than it holds: a gzip-compressed chunk of zeros spanning thousands of
samples (reading one sample decompresses all of them, on every item), a sample of gigabytes that was never
written (it reads as the fill value) or that compresses to almost nothing. The readers of the package read
at least one whole sample at a time, so every variable they use must pass :func:`read_problem`:

- **chunks**: the bytes decoded to read ``count`` samples (the whole chunks the selection touches; a
  contiguous variable reads only the selected slab) stay within ``max(DECODE_FLOOR, DECODE_FACTOR x the
  samples' own bytes)``; a file stored one sample per chunk (the package's own) decodes exactly its sample;
- **size**: one sample, and one chunk (decoded whole), stay within :func:`max_sample_bytes`, a share of the
  machine's memory (:data:`MEMORY_SHARE`; :data:`MAX_SAMPLE_BYTES` overrides it);
- **unwritten**: a variable of more than :data:`UNWRITTEN_CHECK_BYTES` has every chunk (or its contiguous
  block) allocated in the file: one that was never written would read as the fill value.

The facts come from the header (:func:`stored_array`); the storage index is looked up only for variables
large enough to matter.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DECODE_FACTOR", "DECODE_FLOOR", "MAX_SAMPLE_BYTES", "MEMORY_SHARE", "UNWRITTEN_CHECK_BYTES",
    "StoredArray", "chunks_touched", "decoded_bytes", "machine_memory", "max_sample_bytes", "read_problem", "stored_array",
    "unwritten_problem",
]

DECODE_FLOOR = 64 << 20
"""Bytes a read may always decode, whatever its size (chunks of a few MiB are common and cheap)."""

DECODE_FACTOR = 8
"""Beyond :data:`DECODE_FLOOR`, a read may decode this many times the bytes it returns."""

MEMORY_SHARE = 4
"""One sample (and one decoded chunk) may take ``1 / MEMORY_SHARE`` of the machine's memory."""

MAX_SAMPLE_BYTES: int | None = None
"""Bytes one sample may take; ``None``: derived from the machine (:func:`max_sample_bytes`). Tests set it."""

UNWRITTEN_CHECK_BYTES = 64 << 20
"""Variables declaring more bytes than this must have all their storage allocated (smaller ones are not looked up)."""

_FALLBACK_MEMORY = 16 << 30  # when the platform tells nothing


@dataclass(frozen=True)
class StoredArray:
    """What a file's header says about one stored variable.

    Attributes
    ----------
    name
        Its name in the file.
    shape, dtype, itemsize
        As declared.
    chunks
        The chunk shape, ``None`` for contiguous (or compact) storage.
    unwritten
        Why its declared data are not in the file (``"3 of its 4 chunks were never written"``), or ``None``.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    itemsize: int
    chunks: tuple[int, ...] | None = None
    unwritten: str | None = None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize

    def unit_bytes(self, axis: int | None) -> int:
        """Bytes of one entry along ``axis`` (one sample), or of the whole variable (``axis=None``)."""
        if axis is None:
            return self.nbytes
        return math.prod(n for d, n in enumerate(self.shape) if d != axis) * self.itemsize

    @property
    def chunk_bytes(self) -> int:
        return math.prod(self.chunks) * self.itemsize if self.chunks else 0


def stored_array(dataset: Any, name: str | None = None) -> StoredArray:
    """The header facts of an h5py dataset; the storage index is read only above :data:`UNWRITTEN_CHECK_BYTES`."""
    array = StoredArray(
        (name if name is not None else str(dataset.name or "")).lstrip("/"),
        tuple(int(n) for n in dataset.shape or ()),
        str(dataset.dtype),
        max(int(dataset.dtype.itemsize), 1),
        tuple(int(c) for c in dataset.chunks) if dataset.chunks else None,
    )
    if array.nbytes <= UNWRITTEN_CHECK_BYTES:
        return array
    return replace(array, unwritten=_unwritten(dataset, array))


_NETCDF_DIMENSION = b"This is a netCDF dimension but not a netCDF variable"
"""How NetCDF-4 writers mark the dataset behind a dimension without coordinate: its values are never written
(nor read), so it is no variable to refuse."""


def _unwritten(dataset: Any, array: StoredArray) -> str | None:
    from h5py import h5d

    layout = dataset.id.get_create_plist().get_layout()
    problem = None
    if layout == h5d.CHUNKED and array.chunks:
        expected = math.prod(-(-n // c) for n, c in zip(array.shape, array.chunks))
        try:
            allocated = int(dataset.id.get_num_chunks())
        except (AttributeError, RuntimeError):  # an HDF5 without H5Dget_num_chunks: all or nothing
            allocated = expected if dataset.id.get_storage_size() else 0
        if allocated < expected:
            problem = f"{expected - allocated} of its {expected} chunks were never written"
    elif layout == h5d.CONTIGUOUS and dataset.id.get_storage_size() < array.nbytes:
        problem = "its data were never written"
    if problem:
        label = dataset.attrs.get("NAME", b"")
        label = label.encode() if isinstance(label, str) else label
        if isinstance(label, bytes) and label.startswith(_NETCDF_DIMENSION):
            return None
    return problem


def decoded_bytes(array: StoredArray, axis: int | None, count: int = 1) -> int:
    """Bytes decoded to read ``count`` consecutive entries along ``axis`` (``None``: the whole variable).

    Chunked storage decodes every chunk the selection touches, whole; reads are taken to start at multiples
    of ``count`` (as readers of blocks of samples do), and the worst such start counts. Contiguous storage
    reads the selected slab only.
    """
    if not array.chunks:
        return array.unit_bytes(axis) * (count if axis is not None else 1)
    return chunks_touched(array, axis, count) * array.chunk_bytes


def chunks_touched(array: StoredArray, axis: int | None, count: int = 1) -> int:
    """Chunks that reading ``count`` consecutive entries along ``axis`` (``None``: the whole variable) decodes,
    at the worst start that is a multiple of ``count`` (0 for contiguous storage or no values)."""
    if not array.chunks or not array.nbytes:
        return 0
    if axis is None:
        count = 1
    touched = 1
    for d, (n, c) in enumerate(zip(array.shape, array.chunks)):
        along = -(-n // c)
        if d == axis:
            # a block starting at a multiple of count lies at an offset (a multiple of gcd) inside a chunk
            offset = c - math.gcd(count, c)
            along = min(along, (offset + count - 1) // c + 1)
        touched *= along
    return touched


def machine_memory() -> int:
    """Bytes of memory this process may use: the least of physical memory, its address-space limit and
    its cgroup's memory limit (containers, batch jobs)."""
    candidates = []
    try:
        candidates.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            candidates.append(int(soft))
    except (ImportError, ValueError, OSError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            candidates.append(int(text))
    return min(candidates) if candidates else _FALLBACK_MEMORY


def max_sample_bytes() -> int:
    """Bytes one sample of one variable may take: :data:`MAX_SAMPLE_BYTES`, or ``machine_memory() // MEMORY_SHARE``."""
    return int(MAX_SAMPLE_BYTES) if MAX_SAMPLE_BYTES is not None else machine_memory() // MEMORY_SHARE


def unwritten_problem(array: StoredArray) -> str | None:
    """Why ``array`` is refused whatever part of it is read (it declares data that were never written), or ``None``."""
    if not array.unwritten or not array.nbytes:
        return None
    return (f"{_what(array)} declares {_size(array.nbytes)} but {array.unwritten} (they would read as the fill "
            "value): the file does not hold the data it declares")


def read_problem(array: StoredArray, axis: int | None, count: int = 1, alternative: str = "") -> str | None:
    """Why reading ``count`` samples (entries along ``axis``; ``None``: the whole variable) of ``array`` is
    refused, or ``None``: data never written, a sample or a chunk larger than :func:`max_sample_bytes`, more
    bytes decoded than ``max(DECODE_FLOOR, DECODE_FACTOR x the bytes read)``. ``alternative`` ends the messages
    about chunks (the caller's other way out)."""
    if not array.nbytes:
        return None
    problem = unwritten_problem(array)
    if problem:
        return problem
    limit, unit = max_sample_bytes(), array.unit_bytes(axis)
    sample = "one sample" if axis is not None else "the whole variable, read at once,"
    if unit > limit:
        return (f"{_what(array)}: {sample} takes {_size(unit)}, more than the {_size(limit)} a reader may hold for it "
                f"({_whose()})")
    problem = _chunk_problem(array, axis, alternative)
    if problem:
        return problem
    decoded, wanted = decoded_bytes(array, axis, count), unit * (count if axis is not None else 1)
    if decoded > max(DECODE_FLOOR, DECODE_FACTOR * wanted):
        reading = f"{count} samples" if axis is not None and count > 1 else sample
        return (f"{_what(array)} is stored in chunks of {array.chunks}: reading {reading} ({_size(wanted)}) decodes "
                f"{_size(decoded)} of whole chunks, more than max({_size(DECODE_FLOOR)}, {DECODE_FACTOR} x the data "
                "read); " + _rechunk(array, axis) + alternative)
    return None


def _whose() -> str:
    if MAX_SAMPLE_BYTES is not None:
        return "read_limits.MAX_SAMPLE_BYTES"
    return f"1/{MEMORY_SHARE} of the memory this process may use"


def _what(array: StoredArray) -> str:
    return f"variable {array.name!r} {array.shape} {array.dtype}"


def _chunk_problem(array: StoredArray, axis: int | None, alternative: str) -> str | None:
    limit = max_sample_bytes()
    if array.chunk_bytes <= limit:
        return None
    return (f"{_what(array)} is stored in chunks of {array.chunks} ({_size(array.chunk_bytes)} each, decoded whole), "
            f"more than the {_size(limit)} a reader may hold ({_whose()}); "
            + _rechunk(array, axis) + alternative)


def _rechunk(array: StoredArray, axis: int | None) -> str:
    if axis is None:
        return "rechunk it with smaller chunks (h5repack -l, nccopy -c)"
    spec = "x".join("1" if d == axis else str(n) for d, n in enumerate(array.shape))
    return (f"rechunk it with one sample per chunk (h5repack -l {array.name}:CHUNK={spec} in.h5 out.h5, "
            "or nccopy -c <sample dim>/1 in.nc out.nc)")


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.2f} {unit} ({n} bytes)"
    return f"{n} bytes"
