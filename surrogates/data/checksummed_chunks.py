"""Write whole HDF5 chunks with their Fletcher-32 checksums computed here, bypassing HDF5's filter pipeline.

Dataset files store one sample per chunk, each with HDF5's ``fletcher32`` checksum (docs/data_format.md).
Through ``H5Dwrite`` HDF5 copies every chunk into a buffer, copies it again when its filter appends the checksum,
and then computes the checksum: per 2 GiB of samples that is most of the writer's time after the kernel's own
copy. ``numcodecs.Fletcher32`` (a port of HDF5's checksum, the one kerchunk uses to read HDF5 chunks) makes the
checksummed chunk in one pass, and ``H5Dwrite_chunk`` stores those bytes as they are. The file is the same
byte for byte, and HDF5 verifies the checksums on every read as before.

The fast path is used only where it writes exactly what HDF5 would: a chunked dataset of one sample per chunk
whose only filter is Fletcher-32, values of the dataset's own dtype, and a ``numcodecs`` whose checksums agree
with this HDF5's on a probe (:func:`fletcher32_encoder`). Anywhere else the rows go through HDF5 as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


@functools.cache
def fletcher32_encoder() -> Callable[[np.ndarray], Any] | None:
    """``encode(chunk) -> bytes-like``: a C-contiguous array's bytes followed by HDF5's Fletcher-32 checksum of them.

    ``None`` when ``numcodecs`` is missing or its checksum differs from the one this HDF5 library writes on
    probe chunks (an old numcodecs computed another variant): random words, words that make the running sums of
    HDF5's 360-word blocks fold, and sums that are multiples of 65535, where variants of Fletcher-32 differ.
    """
    try:
        from numcodecs import Fletcher32
    except ImportError:
        return None
    import h5py

    encode = Fletcher32().encode
    probe = np.random.default_rng(0).integers(0, 2**16, size=(3, 1000), dtype=np.uint16)
    probe[1, ::7] = 0xFFFF  # running sums that fold at the edges of HDF5's 360-word blocks
    probe[1, 1::7] = 0
    probe[2] = 0xFFFF  # sums that are multiples of 65535: HDF5 keeps 0xFFFF where a plain modulo gives 0
    try:
        with h5py.File("probe.h5", "w", driver="core", backing_store=False) as f:
            dataset = f.create_dataset("probe", data=probe, chunks=(1, probe.shape[1]), fletcher32=True)
            for row in range(probe.shape[0]):
                _, stored = dataset.id.read_direct_chunk((row, 0))
                if bytes(stored) != bytes(encode(probe[row])):
                    return None
    except Exception:  # noqa: BLE001 - any failure of the probe means: use HDF5's own filter
        return None
    return encode


def chunk_writer(dataset: Any, dtype: np.dtype) -> Callable[[int, np.ndarray], None] | None:
    """``write(start, values)`` storing rows ``start .. start + len(values)`` of ``dataset`` as whole checksummed
    chunks, or ``None`` where HDF5's filter must do it (see the module's docstring).

    Parameters
    ----------
    dataset
        An ``h5py.Dataset`` of shape ``(n_samples, *shape)`` chunked ``(1, *shape)``.
    dtype
        The dtype the values will have: it must be the dataset's, byte order included (chunks are stored as given).
    """
    from h5py import h5z

    encode = fletcher32_encoder()
    if encode is None or not hasattr(dataset, "id") or dataset.chunks is None or dataset.ndim < 2:
        return None
    if tuple(dataset.chunks) != (1, *dataset.shape[1:]) or np.dtype(dtype) != dataset.dtype:
        return None
    plist = dataset.id.get_create_plist()
    if plist.get_nfilters() != 1 or plist.get_filter(0)[0] != h5z.FILTER_FLETCHER32:
        return None
    write_chunk = dataset.id.write_direct_chunk
    tail = (0,) * (dataset.ndim - 1)

    def write(start: int, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=dtype)
        for row in range(values.shape[0]):
            write_chunk((start + row, *tail), encode(values[row]))

    return write
