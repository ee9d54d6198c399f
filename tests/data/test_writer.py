import json
import os

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml

from surrogates.data import writer as writer_module
from surrogates.data.schema import SCHEMA_VERSION, DatasetFileError, inspect_file
from surrogates.data.temporaries import temporary_path
from surrogates.data.writer import write_dataset
from tests.data.conftest import CONFIG, REPORT, stationary, time_dependent


def test_round_trip_through_h5py(tmp_path):
    fields, variables, coords, attrs = stationary(5)
    path = write_dataset(tmp_path / "train.h5", fields, variables, coords, attrs)
    with h5py.File(path, "r") as f:
        assert f["a"].dtype == np.float32 and f["x"].dtype == np.float64
        assert f["a"].shape == (5, 8, 6)
        assert f["a"].chunks == (1, 8, 6)  # one sample per chunk
        assert f["a"].compression is None
        np.testing.assert_array_equal(f["u"][2], fields["u"][2].astype(np.float32))
        np.testing.assert_array_equal(f["y"][...], coords["y"].values)


def test_round_trip_through_xarray(tmp_path):
    fields, variables, coords, attrs = stationary(5)
    path = write_dataset(tmp_path / "train.h5", fields, variables, coords, {**attrs, "split": "train"})
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["a"].dims == ("sample", "x", "y")
        assert ds["u"].attrs == {"units": "Pa", "long_name": "pressure"}
        assert ds["x"].attrs["units"] == "m" and ds["x"].attrs["long_name"] == "x position"
        assert ds["y"].attrs["units"] == "m" and "long_name" not in ds["y"].attrs and ds["y"].attrs["periodic"] == 1
        np.testing.assert_allclose(ds["x"].values, coords["x"].values)
        np.testing.assert_allclose(ds["a"].values, fields["a"], rtol=1e-6)
        assert ds.attrs["schema_version"] == SCHEMA_VERSION
        assert ds.attrs["pde"] == "tiny" and ds.attrs["split"] == "train" and int(ds.attrs["seed"]) == 3
        assert ds.attrs["inputs"].split() == ["a"] and ds.attrs["targets"].split() == ["u"]
        assert ds.attrs["created"].endswith("+00:00")
        assert yaml.safe_load(ds.attrs["config"]) == CONFIG
        assert json.loads(ds.attrs["solver_report"]) == REPORT


def test_time_dependent_and_scalar_variables(tmp_path):
    fields, variables, coords, attrs = time_dependent(4)
    path = write_dataset(tmp_path / "t.h5", fields, variables, coords, attrs)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["u"].dims == ("sample", "time", "x") and ds["nu"].dims == ("sample",)
        assert ds["time"].attrs["units"] == "s"
    info = inspect_file(path)
    assert info.n_samples == 4 and info.inputs == ["u", "nu"] and info.targets == ["u"]
    assert info.variables["nu"].shape == (4,)


def test_nan_is_refused_and_nothing_written(tmp_path):
    fields, variables, coords, attrs = stationary(6)
    fields["u"][2, 1, 1] = np.nan
    fields["u"][4, 0, 0] = np.inf
    path = tmp_path / "bad.h5"
    with pytest.raises(DatasetFileError, match=r"variable 'u' has NaN or inf .* sample\(s\) 2, 4") as error:
        write_dataset(path, fields, variables, coords, attrs)
    assert str(path) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_values_beyond_float32_are_refused(tmp_path):
    fields, variables, coords, attrs = stationary(3)
    fields["a"][1, 0, 0] = 1e300
    with pytest.raises(DatasetFileError, match=r"'a'.*sample\(s\) 1"):
        write_dataset(tmp_path / "big.h5", fields, variables, coords, attrs)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f, v, c, a: f.update(a=f["a"][:, :, :5]), r"'a' has shape \(4, 8, 5\), expected"),
        (lambda f, v, c, a: f.update(a=f["a"][:3]), r"different numbers of samples \(a 3, u 4\)"),
        (lambda f, v, c, a: f.pop("u"), "must have the same names"),
        (lambda f, v, c, a: c.pop("y"), "no coordinate 'y'"),
        (lambda f, v, c, a: a.pop("pde"), r"missing required attribute\(s\) \['pde'\]"),
        (lambda f, v, c, a: a.update(targets="w"), "must name variables"),
        (lambda f, v, c, a: a.update(extra={"k": 1}), "attribute 'extra' is a dict"),
    ],
)
def test_inconsistent_input_is_refused(tmp_path, change, message):
    fields, variables, coords, attrs = stationary(4)
    change(fields, variables, coords, attrs)
    with pytest.raises(DatasetFileError, match=message):
        write_dataset(tmp_path / "x.h5", fields, variables, coords, attrs)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    fields, variables, coords, attrs = stationary(3)
    path = write_dataset(tmp_path / "train.h5", fields, variables, coords, attrs)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_dataset(path, fields, variables, coords, attrs)
    fields2, *_ = stationary(7)
    write_dataset(path, fields2, variables, coords, attrs, overwrite=True)
    assert inspect_file(path).n_samples == 7


def test_failure_during_write_leaves_no_file(tmp_path, monkeypatch):
    fields, variables, coords, attrs = stationary(3)
    path = tmp_path / "train.h5"

    def broken_set_meta(var, spec):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer_module, "set_meta", broken_set_meta)
    with pytest.raises(RuntimeError, match="disk full"):
        write_dataset(path, fields, variables, coords, attrs)
    assert list(tmp_path.iterdir()) == []


def test_failure_at_rename_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    fields, variables, coords, attrs = stationary(3)
    path = write_dataset(tmp_path / "train.h5", fields, variables, coords, attrs)
    before = path.read_bytes()
    seen = []

    def interrupted_replace(src, dst):
        seen.append(os.path.basename(src))
        assert inspect_file(src).n_samples == 5  # the temporary file is complete before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_module.os, "replace", interrupted_replace)
    fields5, *_ = stationary(5)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(path, fields5, variables, coords, attrs, overwrite=True)
    assert seen == [temporary_path(path).name] and seen[0].startswith("train.h5.tmp-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.h5"]
    assert path.read_bytes() == before


def test_zero_samples(tmp_path):
    from surrogates.data.dataset import FieldDataset

    fields, variables, coords, attrs = time_dependent(0)
    empty_arrays = write_dataset(tmp_path / "a.h5", fields, variables, coords, attrs)
    empty_mapping = write_dataset(tmp_path / "b.h5", {}, variables, coords, attrs)
    for path in (empty_arrays, empty_mapping):
        info = inspect_file(path)
        assert info.n_samples == 0 and info.variables["u"].shape == (0, 3, 16)
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            assert ds["u"].dims == ("sample", "time", "x")
    assert len(FieldDataset([empty_mapping], ["u"], ["u"], input_time=0, target_time=-1)) == 0
