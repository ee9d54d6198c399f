"""The import's streaming pass: rows written from views of a block, source checksums computed alongside."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from surrogates.data.importers.run import consecutive_runs
from surrogates.data.schema import DatasetFileError
from surrogates.data.writer import StreamingDatasetWriter

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
