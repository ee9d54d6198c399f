"""data=xarray's split of one file: recorded with the file's identity, recomputed for evaluation only on the same samples."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr

from surrogates.data.schema import DatasetFileError
from surrogates.data.xarray_datamodule import XarrayDataModule

N = 20


def _write(path, n=N, order=None, dtype="float32"):
    """a (sample, x) -> u (sample, x); a[:, 0] is the sample's id."""
    a = np.zeros((n, 4), np.float32)
    a[:, 0] = np.arange(n)
    a[:, 1:] = np.random.default_rng(0).normal(size=(n, 3))[:, :]
    a = a if order is None else a[order]
    ds = xr.Dataset({"a": (("sample", "x"), a), "u": (("sample", "x"), a + 1)}, coords={"x": np.arange(4.0)})
    ds.to_netcdf(path, engine="h5netcdf", encoding={name: {"dtype": dtype} for name in ("a", "u")})
    return path


def _ids(dataset) -> list[int]:
    return [int(dataset[i]["x"][0, 0]) for i in range(len(dataset))]


@pytest.fixture
def trained(tmp_path):
    """The schema of a run trained on 20 samples, and its test sample ids."""
    path = _write(tmp_path / "my.nc")
    dm = XarrayDataModule(["a"], ["u"], path=path, batch_size=4)
    dm.setup("fit")
    return path, dm.data_schema(), _ids(dm._load("test"))


def test_the_schema_records_the_files_samples(trained):
    _, schema, _ = trained
    identity = schema.reader["file"]
    assert identity["n_samples"] == N and identity["variables"] == ["a", "u"]
    assert identity["samples"][0] == 0 and identity["samples"][-1] == N - 1 and len(identity["sha256"]) == 64


def test_evaluation_reads_the_same_split_of_the_same_file_or_a_copy(trained, tmp_path):
    path, schema, test_ids = trained
    assert _ids(XarrayDataModule.from_schema(schema)._load("test")) == test_ids
    copy = shutil.copy(path, tmp_path / "copy.nc")  # on another machine, say
    assert _ids(XarrayDataModule.from_schema(schema, copy)._load("test")) == test_ids
    float64 = _write(tmp_path / "float64.nc", dtype="float64")  # the same values written again, otherwise encoded
    assert _ids(XarrayDataModule.from_schema(schema, float64)._load("test")) == test_ids


def test_a_file_with_samples_appended_is_refused(trained):
    path, schema, _ = trained
    _write(path, n=N + 2)  # the first 20 unchanged: the split of 22 would put trained-on samples into test
    with pytest.raises(DatasetFileError, match=r"my.nc: holds 22 samples, but the file the model was trained on held 20"):
        XarrayDataModule.from_schema(schema)._load("test")


def test_a_file_with_other_or_reordered_samples_is_refused(trained):
    path, schema, _ = trained
    _write(path, order=np.roll(np.arange(N), 1))
    with pytest.raises(DatasetFileError, match=r"my.nc: holds other samples than the file the model was trained on "
                       r"\(as many, 20, but samples 0, .* of \['a', 'u'\] differ"):
        XarrayDataModule.from_schema(schema)._load("test")


def test_schemas_written_before_the_record_still_evaluate(trained):
    _, schema, test_ids = trained
    old = replace(schema, reader={key: value for key, value in schema.reader.items() if key != "file"})
    with pytest.warns(UserWarning, match="does not record which samples"):
        dm = XarrayDataModule.from_schema(old)
    assert _ids(dm._load("test")) == test_ids


@pytest.mark.parametrize("per_split", [False, True])
def test_relative_files_are_recorded_as_absolute(tmp_path, monkeypatch, per_split):
    """a checkpoint trained on data.path=my.nc evaluates from any working directory"""
    _write(tmp_path / "my.nc")
    monkeypatch.chdir(tmp_path)
    files = {"train": "my.nc", "test": "my.nc"} if per_split else {"path": "my.nc"}
    dm = XarrayDataModule(["a"], ["u"], batch_size=4, **files)
    dm.setup("fit")
    schema = dm.data_schema()
    monkeypatch.chdir(tmp_path.parent)
    assert schema.source == str(tmp_path / "my.nc")
    assert all(f == str(tmp_path / "my.nc") for f in schema.reader["files"].values())
    assert len(XarrayDataModule.from_schema(schema)._load("test")) > 0
