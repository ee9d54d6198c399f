"""The import's streaming pass: rows written from views of a block, source checksums computed alongside."""

from __future__ import annotations

import contextlib
import hashlib
import json

import h5py
import numpy as np
import pytest

from surrogates.data.importers.run import consecutive_runs
from surrogates.data.schema import DatasetFileError
from surrogates.data.streaming_writer import StreamingDatasetWriter

from .conftest import write_tensor_1d


def test_consecutive_runs_cover_the_rows_exactly_once():
    rng = np.random.default_rng(0)
    for _ in range(50):
        rows = np.flatnonzero(rng.random(int(rng.integers(0, 40))) < 0.7)
        runs = consecutive_runs(rows)
        covered = np.concatenate([np.arange(a, b) for a, b in runs]) if runs else np.zeros(0, int)
        np.testing.assert_array_equal(covered, rows)
        assert all(b1 < a2 for (_, b1), (a2, _) in zip(runs, runs[1:]))  # maximal: a gap between runs


def test_checksums_computed_alongside_the_writes_are_the_source_s(run_import, tmp_path):
    path = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    write_tensor_1d(path, n=23)
    files = run_import(f"source={path}", "name=b", "chunk_size=4")
    expected = {str(path): hashlib.sha256(path.read_bytes()).hexdigest()}
    for file in files:
        with h5py.File(file, "r") as f:
            assert json.loads(f.attrs["source_sha256"]) == expected
            assert expected[str(path)] in f.attrs["fingerprint"]
    assert not list(files[0].parent.glob("*.tmp*"))


def test_writer_replaces_only_attributes_it_was_given(tmp_path):
    from types import SimpleNamespace as NS

    coords = {"x": NS(values=np.arange(3.0), units="1", long_name="")}
    attrs = {"pde": "t", "inputs": "u", "targets": "u", "source": "[]", "source_sha256": "pending", "import_config": ""}
    with StreamingDatasetWriter(tmp_path / "d.h5", 2, {"u": NS(dims=("x",), units="1", long_name="")}, coords, attrs) as out:
        out.write(0, {"u": np.ones((2, 3))})
        with pytest.raises(DatasetFileError, match="update_attrs replaces"):
            out.update_attrs({"unknown": "x"})
        out.update_attrs({"source_sha256": "{}"})
        out.commit()
    with h5py.File(tmp_path / "d.h5", "r") as f:
        assert f.attrs["source_sha256"] == "{}"


def _open_descriptors(path) -> int:
    """How many of this process's file descriptors point at ``path``."""
    import os

    fd_dir = "/proc/self/fd"
    return sum(1 for fd in os.listdir(fd_dir) if os.path.realpath(os.path.join(fd_dir, fd)) == str(path))


@pytest.mark.parametrize("finish", ["commit", "error"])
def test_writeback_is_started_every_writeback_bytes_and_its_descriptor_closed(tmp_path, monkeypatch, finish):
    """The writer starts the kernel's writeback after every ``WRITEBACK_BYTES`` of samples (here 3 samples' worth),
    the published file holds the same samples, and no descriptor of the temporary file outlives the writer."""
    import sys
    from types import SimpleNamespace as NS

    import surrogates.data.streaming_writer as streaming_writer

    if streaming_writer._writeback_starter() is None:
        pytest.skip("no sync_file_range in this C library: the final fsync writes everything")
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc/self/fd lists descriptors on Linux only")
    started = []
    real = streaming_writer._writeback_starter()
    monkeypatch.setattr(streaming_writer, "_writeback_starter", lambda: lambda fd: (started.append(fd), real(fd)))
    sample_bytes = 5 * 4  # float32 samples of 5 values
    monkeypatch.setattr(streaming_writer, "WRITEBACK_BYTES", 3 * sample_bytes)
    coords = {"x": NS(values=np.arange(5.0), units="1", long_name="")}
    attrs = {"pde": "t", "inputs": "u", "targets": "u", "source": "[]", "source_sha256": "{}", "import_config": ""}
    values = np.random.default_rng(0).standard_normal((10, 5))
    out = StreamingDatasetWriter(tmp_path / "d.h5", 10, {"u": NS(dims=("x",), units="1", long_name="")}, coords, attrs)
    with pytest.raises(RuntimeError) if finish == "error" else contextlib.nullcontext():
        with out:
            for start in range(0, 10, 2):  # blocks of 2 samples: 3 samples' worth is passed after blocks 2, 4
                out.write(start, {"u": values[start : start + 2]})
                assert _open_descriptors(out.tmp) >= 2  # h5py's and the writeback's
            assert len(started) == 2 and len(set(started)) == 1
            if finish == "error":
                raise RuntimeError("interrupted")
            out.commit()
    assert _open_descriptors(out.tmp) == 0 and not out.tmp.exists()
    if finish == "commit":
        with h5py.File(tmp_path / "d.h5", "r") as f:  # fletcher32 verified on read
            np.testing.assert_array_equal(f["u"][...], values.astype(np.float32))
    else:
        assert not (tmp_path / "d.h5").exists()


def test_rows_written_through_the_low_level_api_land_where_setitem_puts_them(tmp_path):
    """Runs of rows of every length and position (per-sample scalars, time series, strided views of a block)
    written by the writer read back exactly as the same writes through h5py's ``__setitem__``."""
    from types import SimpleNamespace as NS

    rng = np.random.default_rng(1)
    n = 17
    coords = {"time": NS(values=np.arange(3.0), units="1", long_name=""),
              "x": NS(values=np.arange(4.0), units="1", long_name="")}
    variables = {"u": NS(dims=("time", "x"), units="1", long_name=""), "p": NS(dims=(), units="1", long_name="")}
    attrs = {"pde": "t", "inputs": "u", "targets": "u", "source": "[]", "source_sha256": "{}", "import_config": ""}
    block = rng.standard_normal((n, 3, 4, 2))  # float64 with a trailing component axis: u is a strided view of it
    params = rng.standard_normal(n)
    with StreamingDatasetWriter(tmp_path / "d.h5", n, variables, coords, attrs) as out:
        rows = np.arange(n)
        rng.shuffle(rows)
        for first, last in consecutive_runs(np.sort(rows[:9])) + consecutive_runs(np.sort(rows[9:])):
            out.write(int(first), {"u": block[first:last, ..., 1], "p": params[first:last]})
        out.commit()
    with h5py.File(tmp_path / "expected.h5", "w") as f:
        f.create_dataset("u", (n, 3, 4), "f4")[...] = block[..., 1]
        f.create_dataset("p", (n,), "f4")[...] = params
    with h5py.File(tmp_path / "d.h5", "r") as got, h5py.File(tmp_path / "expected.h5", "r") as expected:
        for name in ("u", "p"):
            np.testing.assert_array_equal(got[name][...], expected[name][...])
