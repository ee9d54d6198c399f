"""What a NetCDF request body's header says about one variable, and what reading it would cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surrogates.data import read_limits
from surrogates.serve.codecs.body_limits import CHUNK_BOOKKEEPING

@dataclass(frozen=True)
class NetcdfVariable:
    """What a NetCDF file's header says about one variable (nothing of its data is read)."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None = None
    text: bool = False
    """Variable-length strings (HDF5): how many bytes they hold is known only once they are read."""
    attributes: int = 0
    """How many attributes reading the variable reads (NetCDF-4; NetCDF-3 headers are checked whole)."""
    stored: tuple[int, ...] | None = None
    """The shape of the data an HDF5 dataset holds, where it differs from its dims' sizes (``shape``, which is
    what h5netcdf reports): xarray would read a larger dataset whole, whatever its dims say."""

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def header_facts(self) -> read_limits.StoredArray:
        """The variable as :mod:`surrogates.data.read_limits` measures a stored array (shape, dtype, chunks)."""
        return read_limits.StoredArray(self.name, self.shape, str(self.dtype), max(int(self.dtype.itemsize), 1), self.chunks)

    @property
    def chunks_read(self) -> int:
        """HDF5 chunks that reading the whole variable touches (none for contiguous data, or no values)."""
        return read_limits.chunks_touched(self.header_facts, None)

    @property
    def decoded_bytes(self) -> int:
        """Bytes produced by reading the whole variable: for a chunked (compressed) variable every chunk it
        touches is decompressed whole, so a chunk larger than the variable counts in full, and HDF5's
        bookkeeping of each chunk (:data:`~surrogates.serve.codecs.body_limits.CHUNK_BOOKKEEPING`) counts too."""
        return read_limits.decoded_bytes(self.header_facts, None) + self.chunks_read * CHUNK_BOOKKEEPING
