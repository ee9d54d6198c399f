"""What reading one sample may cost, checked from the header (surrogates/data/read_limits.py): a chunk spanning
many samples, a sample larger than memory allows and data declared but never written are refused before a
value is read, naming the file and the variable; the package's own files and common chunkings pass."""

from __future__ import annotations

from pathlib import Path

import h5netcdf
import numpy as np
import pytest

from surrogates.data import read_limits
from surrogates.data.dataset import FieldDataset
from surrogates.data.foreign import ForeignLayout, inspect_foreign
from surrogates.data.read_limits import StoredArray, decoded_bytes, read_problem
from surrogates.data.schema import DatasetFileError, inspect_file
from surrogates.data.shards import shard_path
from surrogates.data.writer import write_dataset
from tests.data.conftest import stationary

N, S = 32, 4  # samples, points per side: one float32 sample is S * S * 4 = 64 bytes
SAMPLE_BYTES = S * S * 4


def _foreign(path: Path, chunk_samples: int | None, written: int = N, compression: str | None = None,
             fillvalue: float | None = None) -> Path:
    """``a``, ``u (sample, x, y)`` float32 in chunks of ``chunk_samples`` samples (None: contiguous); only the first
    ``written`` samples of ``u`` are written; ``fillvalue``: their ``_FillValue`` (a missing-value marker)."""
    chunks = (chunk_samples, S, S) if chunk_samples else None
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"sample": N, "x": S, "y": S}
        f.create_variable("x", ("x",), data=np.arange(S, dtype="f8"))
        f.create_variable("y", ("y",), data=np.arange(S, dtype="f8"))
        options = dict(chunks=chunks, compression=compression, fillvalue=fillvalue)
        f.create_variable("a", ("sample", "x", "y"), data=np.ones((N, S, S), "f4"), **options)
        u = f.create_variable("u", ("sample", "x", "y"), dtype="f4", **options)
        if written:
            u[:written] = np.ones((written, S, S), "f4")
    return path


def test_decoded_bytes_count_whole_chunks():
    per_sample = StoredArray("u", (N, S, S), "float32", 4, (1, S, S))
    assert decoded_bytes(per_sample, 0) == SAMPLE_BYTES
    spanning = StoredArray("u", (N, S, S), "float32", 4, (8, S, S))
    assert decoded_bytes(spanning, 0) == 8 * SAMPLE_BYTES
    assert decoded_bytes(spanning, 0, count=8) == 8 * SAMPLE_BYTES  # blocks of whole chunks
    assert decoded_bytes(spanning, 0, count=3) == 2 * 8 * SAMPLE_BYTES  # a block of 3 can straddle two chunks
    assert decoded_bytes(spanning, 0, count=4) == 8 * SAMPLE_BYTES  # 4 divides 8: never straddles
    split_space = StoredArray("u", (N, S, S), "float32", 4, (1, S // 2, S // 2))
    assert decoded_bytes(split_space, 0) == SAMPLE_BYTES
    contiguous = StoredArray("u", (N, S, S), "float32", 4, None)
    assert decoded_bytes(contiguous, 0) == SAMPLE_BYTES and decoded_bytes(contiguous, None) == N * SAMPLE_BYTES


def test_a_chunk_spanning_many_samples_is_refused(tmp_path, monkeypatch):
    # below the floor every read passes: bring it under one chunk of these tiny files
    monkeypatch.setattr(read_limits, "DECODE_FLOOR", SAMPLE_BYTES)
    factor = read_limits.DECODE_FACTOR
    ok = _foreign(tmp_path / "ok.nc", factor)  # a sample decodes DECODE_FACTOR x its bytes: the limit
    assert inspect_foreign(ok, ForeignLayout()).n_samples == N
    bad = _foreign(tmp_path / "bad.nc", 2 * factor, compression="gzip", fillvalue=-999.0)

    def read(*args, **kwargs):
        raise AssertionError("a value was read before the header was checked")

    # the scans of NaN and of missing values (the _FillValue) read data: they come after the header's check
    monkeypatch.setattr("surrogates.data.schema.check_finite_values", read)
    monkeypatch.setattr("surrogates.data.foreign._check_missing_values", read)
    for check_finite in (True, False):
        with pytest.raises(DatasetFileError) as error:
            FieldDataset([bad], ["a"], ["u"], layout=ForeignLayout(), check_finite=check_finite)
        message = str(error.value)
        assert message.startswith(str(bad)) and "'a'" in message and f"({2 * factor}, {S}, {S})" in message, message
        assert "rechunk" in message and f"chunk_size={2 * factor}" in message  # the two ways out


def test_common_chunkings_pass_with_the_real_limits(tmp_path):
    path = tmp_path / "chunked.nc"  # (100, 64, 64) float32 chunks, gzip: what NetCDF tools often write
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"sample": 100, "x": 64, "y": 64}
        for name in ("a", "u"):
            f.create_variable(name, ("sample", "x", "y"), data=np.zeros((100, 64, 64), "f4"), chunks=(100, 64, 64),
                              compression="gzip")
    assert FieldDataset([path], ["a"], ["u"], layout=ForeignLayout())[0]["x"].shape == (1, 64, 64)
    assert inspect_foreign(_foreign(tmp_path / "contiguous.nc", None), ForeignLayout()).n_samples == N


def test_a_sample_larger_than_memory_allows_is_refused(tmp_path, monkeypatch):
    path = _foreign(tmp_path / "f.nc", 1)
    monkeypatch.setattr(read_limits, "MAX_SAMPLE_BYTES", SAMPLE_BYTES)
    assert inspect_foreign(path, ForeignLayout(), check_finite=False).n_samples == N
    monkeypatch.setattr(read_limits, "MAX_SAMPLE_BYTES", SAMPLE_BYTES - 1)
    with pytest.raises(DatasetFileError) as error:
        inspect_foreign(path, ForeignLayout(), check_finite=False)
    message = str(error.value)
    assert message.startswith(str(path)) and "'a'" in message and f"({N}, {S}, {S})" in message
    assert f"takes {SAMPLE_BYTES} bytes" in message and f"the {SAMPLE_BYTES - 1} bytes" in message


def test_the_limit_follows_the_machine(monkeypatch):
    monkeypatch.setattr(read_limits, "MAX_SAMPLE_BYTES", None)
    assert read_limits.max_sample_bytes() == read_limits.machine_memory() // read_limits.MEMORY_SHARE > 0


def test_data_declared_but_never_written_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(read_limits, "UNWRITTEN_CHECK_BYTES", 0)  # look every variable up, however small
    path = _foreign(tmp_path / "holes.nc", 1, written=N - 3)
    with pytest.raises(DatasetFileError) as error:
        inspect_foreign(path, ForeignLayout(), check_finite=False)
    assert "'u'" in str(error.value) and f"3 of its {N} chunks were never written" in str(error.value)
    contiguous = _foreign(tmp_path / "empty.nc", None, written=0)
    with pytest.raises(DatasetFileError, match="'u'.*never written"):
        inspect_foreign(contiguous, ForeignLayout(), check_finite=False)


def test_the_package_files_pass_the_strictest_checks(tmp_path, monkeypatch):
    fields, variables, coords, attrs = stationary(5)
    path = write_dataset(shard_path(tmp_path, "train"), fields, variables, coords, attrs)
    monkeypatch.setattr(read_limits, "UNWRITTEN_CHECK_BYTES", 0)
    monkeypatch.setattr(read_limits, "DECODE_FLOOR", 0)
    monkeypatch.setattr(read_limits, "MAX_SAMPLE_BYTES", 8 * 6 * 4)  # one float32 sample of 8 x 6: one per chunk
    assert inspect_file(path).n_samples == 5


def test_problems_name_the_variable_and_its_shape():
    array = StoredArray("u", (N, S, S), "float32", 4, (N, S, S))
    assert read_problem(array, 0, alternative=", or else") is None  # under DECODE_FLOOR
    big = StoredArray("u", (4096, 128, 128), "float32", 4, (4096, 128, 128))
    problem = read_problem(big, 0, alternative=", or else")
    assert "'u' (4096, 128, 128) float32" in problem and "CHUNK=1x128x128" in problem and problem.endswith(", or else")
