"""Chunks written with checksums computed outside HDF5 are HDF5's own chunks, byte for byte, and checked on read."""

from __future__ import annotations

from types import SimpleNamespace as NS

import h5py
import numpy as np
import pytest

import surrogates.data.streaming_writer as streaming_writer
from surrogates.data.checksummed_chunks import chunk_writer, fletcher32_encoder
from surrogates.data.streaming_writer import StreamingDatasetWriter

needs_encoder = pytest.mark.skipif(fletcher32_encoder() is None, reason="numcodecs missing or not HDF5's Fletcher-32")


def _samples(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 samples over the whole finite range: tiny, subnormal, huge, negative, zero."""
    values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-40, 38, shape)).astype(np.float32)
    flat = values.reshape(-1)
    flat[:: 11] = 0.0
    flat[1 :: 13] = np.finfo(np.float32).max
    flat[2 :: 17] = -np.finfo(np.float32).max
    flat[3 :: 19] = np.finfo(np.float32).smallest_subnormal
    assert np.isfinite(values).all()
    return values


@needs_encoder
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 6), (2, 361), (4, 1, 3, 2)])
def test_chunks_are_hdf5_s_own_bytes(tmp_path, shape):
    """Every chunk written by :func:`chunk_writer` equals, bytes and checksum, the one HDF5's fletcher32 filter
    writes for the same rows (``shape[0]`` samples; 361 values cross a 360-word fold of the checksum)."""
    values = _samples(np.random.default_rng(sum(shape)), shape)
    with h5py.File(tmp_path / "ours.h5", "w") as ours, h5py.File(tmp_path / "hdf5.h5", "w") as hdf5:
        chunks = (1, *shape[1:])
        mine = ours.create_dataset("u", shape, "f4", chunks=chunks, fletcher32=True, fillvalue=np.nan)
        theirs = hdf5.create_dataset("u", shape, "f4", chunks=chunks, fletcher32=True, fillvalue=np.nan)
        write = chunk_writer(mine, np.float32)
        assert write is not None
        write(1, values[1:])
        write(0, values[:1])
        theirs[...] = values
        tail = (0,) * (len(shape) - 1)
        for row in range(shape[0]):
            assert mine.id.read_direct_chunk((row, *tail)) == theirs.id.read_direct_chunk((row, *tail))
    with h5py.File(tmp_path / "ours.h5", "r") as f:  # HDF5 verifies every checksum on this read
        np.testing.assert_array_equal(f["u"][...], values)


@needs_encoder
def test_a_flipped_byte_in_a_chunk_fails_the_read(tmp_path):
    values = np.arange(2 * 64, dtype=np.float32).reshape(2, 64)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("u", values.shape, "f4", chunks=(1, 64), fletcher32=True)
        chunk_writer(dataset, np.float32)(0, values)
        offset = dataset.id.get_chunk_info(1).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset + 10)
        byte = handle.read(1)
        handle.seek(offset + 10)
        handle.write(bytes([byte[0] ^ 0x01]))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["u"][0], values[0])
        with pytest.raises(OSError):
            f["u"][1]


@pytest.mark.parametrize(
    "options, dtype",
    [
        ({"chunks": (1, 8), "fletcher32": True, "compression": "gzip"}, np.float32),  # another filter as well
        ({"chunks": (2, 8), "fletcher32": True}, np.float32),  # two samples a chunk
        ({"chunks": (1, 8)}, np.float32),  # no checksum
        ({"chunks": (1, 8), "fletcher32": True}, np.float64),  # values of another dtype than the dataset's
        ({"chunks": (1, 8), "fletcher32": True}, np.dtype(">f4")),  # another byte order
        ({}, np.float32),  # contiguous
    ],
)
def test_datasets_the_fast_path_would_not_write_as_hdf5_go_through_hdf5(tmp_path, options, dtype):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        dataset = f.create_dataset("u", (4, 8), "f4", **options)
        assert chunk_writer(dataset, dtype) is None


def test_a_numcodecs_with_another_checksum_is_not_used(monkeypatch):
    """The probe against this HDF5's own checksums refuses an implementation of another Fletcher-32 variant."""
    import numcodecs

    class OtherVariant:  # the modulo-65535-at-every-step variant: differs from HDF5's where the sums fold
        def encode(self, buf):
            words = np.frombuffer(np.ascontiguousarray(buf).tobytes(), ">u2").astype(np.int64)
            sum1 = np.cumsum(words) % 65535
            sum2 = int(np.sum(sum1) % 65535)
            return np.ascontiguousarray(buf).tobytes() + ((sum2 << 16) | int(sum1[-1])).to_bytes(4, "little")

    fletcher32_encoder.cache_clear()
    monkeypatch.setattr(numcodecs, "Fletcher32", OtherVariant)
    try:
        assert fletcher32_encoder() is None
    finally:
        fletcher32_encoder.cache_clear()


def _write_file(path, values, params, rows):
    coords = {"x": NS(values=np.arange(values.shape[1], dtype=float), units="1", long_name="")}
    variables = {"u": NS(dims=("x",), units="1", long_name=""), "p": NS(dims=(), units="1", long_name="")}
    attrs = {"pde": "t", "inputs": "u", "targets": "u", "source": "[]", "source_sha256": "{}", "import_config": ""}
    with StreamingDatasetWriter(path, len(values), variables, coords, attrs) as out:
        for first, last in rows:
            out.write(first, {"u": values[first:last], "p": params[first:last]})
        out.commit()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("gather_scalars", [True, False])
def test_the_streaming_writer_stores_the_same_file_contents_either_way(tmp_path, monkeypatch, fast, gather_scalars):
    """With or without the fast chunk path, per-sample scalars gathered to the commit or written block by block,
    the file reads back the rows written, in runs out of order."""
    if fast and fletcher32_encoder() is None:
        pytest.skip("numcodecs missing or not HDF5's Fletcher-32")
    if not fast:
        monkeypatch.setattr(streaming_writer, "chunk_writer", lambda dataset, dtype: None)
    if not gather_scalars:
        monkeypatch.setattr(streaming_writer, "GATHERED_SCALAR_BYTES", 0)
    rng = np.random.default_rng(3)
    values, params = rng.standard_normal((9, 6)), rng.standard_normal(9)
    _write_file(tmp_path / "d.h5", values, params, [(4, 9), (0, 1), (1, 4)])
    with h5py.File(tmp_path / "d.h5", "r") as f:
        np.testing.assert_array_equal(f["u"][...], values.astype(np.float32))
        np.testing.assert_array_equal(f["p"][...], params.astype(np.float32))
        assert f["u"].fletcher32 and f["p"].fletcher32


def test_gathered_scalars_of_an_unfinished_file_are_not_published(tmp_path):
    rng = np.random.default_rng(4)
    values, params = rng.standard_normal((5, 3)), rng.standard_normal(5)
    with pytest.raises(Exception, match="3 of 5 samples were written"):
        _write_file(tmp_path / "d.h5", values, params, [(0, 3)])
    assert not list(tmp_path.iterdir())

