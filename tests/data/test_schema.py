import h5netcdf
import h5py
import numpy as np
import pytest

from surrogates.data.schema import DatasetFileError, inspect_file, require_variables
from surrogates.data.writer import write_dataset
from tests.data.conftest import base_attrs, stationary


@pytest.fixture
def valid(tmp_path):
    fields, variables, coords, attrs = stationary(6)
    return write_dataset(tmp_path / "train.h5", fields, variables, coords, attrs)


def _write_raw(path, a, attrs=None, dims=("sample", "x", "y"), coords=("x", "y")):
    """A file written by plain h5netcdf, bypassing the writer's checks."""
    with h5netcdf.File(path, "w") as f:
        f.dimensions = dict(zip(dims, a.shape))
        for name in coords:
            f.create_variable(name, (name,), dtype="f8", data=np.arange(f.dimensions[name].size, dtype=float))
        f.create_variable("a", dims, dtype="f4", data=a)
        f.create_variable("u", dims, dtype="f4", data=np.zeros_like(a))
        for key, value in (attrs if attrs is not None else {**base_attrs("a", "u"), "schema_version": "1.0",
                                                                  "created": "2024-01-01T00:00:00+00:00"}).items():
            f.attrs[key] = value
    return path


def test_valid_file_is_described(valid):
    info = inspect_file(valid)
    assert info.n_samples == 6 and info.path == valid
    assert info.variables["a"].dims == ("sample", "x", "y") and info.variables["a"].shape == (6, 8, 6)
    dims, shape, *_ = info.variables["u"]
    assert dims == ("sample", "x", "y") and shape == (6, 8, 6)
    assert set(info.coords) == {"x", "y"} and info.coords["x"].attrs["units"] == "m"
    assert info.attrs["seed"] == 3 and isinstance(info.attrs["seed"], int)


def test_missing_variable_lists_what_is_there(valid):
    info = inspect_file(valid)
    with pytest.raises(DatasetFileError, match=r"missing variable\(s\) \['w'\]; available: a \(sample, x, y\), u \(sample, x, y\)") as error:
        require_variables(info, ["a", "w"])
    assert str(valid) in str(error.value)


def test_wrong_dims_are_reported(valid):
    info = inspect_file(valid)
    require_variables(info, ["a"], dims={"a": ("sample", "x", "y")})
    with pytest.raises(DatasetFileError, match=r"'a' has dims \('sample', 'x', 'y'\), expected \('sample', 'time', 'x'\)"):
        require_variables(info, ["a"], dims={"a": ("sample", "time", "x")})


def test_first_dim_must_be_sample(tmp_path):
    path = _write_raw(tmp_path / "raw.h5", np.zeros((4, 3, 2), np.float32), dims=("x", "sample", "y"))
    with pytest.raises(DatasetFileError, match="first dim of every data variable must be 'sample'"):
        inspect_file(path)


def test_file_without_dimension_scales_is_reported(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((3, 4))
        for key, value in {**base_attrs("a", "a"), "schema_version": "1.0", "created": "now"}.items():
            f.attrs[key] = value
    with pytest.raises(DatasetFileError, match="phony_dim_0"):
        inspect_file(path)


def test_nan_in_a_file_written_without_the_writer(tmp_path):
    a = np.ones((7, 4, 3), np.float32)
    a[5, 2, 1] = np.nan
    a[6, 0, 0] = np.inf
    path = _write_raw(tmp_path / "nan.h5", a)
    with pytest.raises(DatasetFileError, match=r"variable 'a' contains NaN or inf at sample 5") as error:
        inspect_file(path)
    assert str(path) in str(error.value)
    assert inspect_file(path, check_finite=False).n_samples == 7


def test_finite_scan_reads_in_blocks(tmp_path, monkeypatch):
    from surrogates.data import schema

    monkeypatch.setattr(schema, "_SCAN_BYTES", 4 * 12 * 2)  # two samples per block
    a = np.ones((7, 4, 3), np.float32)
    a[5, 2, 1] = np.nan
    with pytest.raises(DatasetFileError, match="at sample 5"):
        inspect_file(_write_raw(tmp_path / "nan.h5", a))


def test_missing_attributes_and_unknown_version(tmp_path):
    path = _write_raw(tmp_path / "noattrs.h5", np.zeros((2, 3, 2), np.float32), attrs={"pde": "x"})
    with pytest.raises(DatasetFileError, match=r"missing file attribute\(s\) \['schema_version', 'inputs'"):
        inspect_file(path)
    attrs = {**base_attrs("a", "u"), "schema_version": "2.0", "created": "now"}
    path = _write_raw(tmp_path / "v2.h5", np.zeros((2, 3, 2), np.float32), attrs=attrs)
    with pytest.raises(DatasetFileError, match="schema_version '2.0' is not supported"):
        inspect_file(path)


def test_inputs_attribute_must_name_variables(tmp_path):
    attrs = {**base_attrs("a k", "u"), "schema_version": "1.0", "created": "now"}
    path = _write_raw(tmp_path / "k.h5", np.zeros((2, 3, 2), np.float32), attrs=attrs)
    with pytest.raises(DatasetFileError, match=r"attribute 'inputs' names \['k'\], which the file lacks"):
        inspect_file(path)


def test_dim_without_coordinate(tmp_path):
    path = _write_raw(tmp_path / "nocoord.h5", np.zeros((2, 3, 2), np.float32), coords=("x",))
    with pytest.raises(DatasetFileError, match="dim 'y' without a coordinate variable"):
        inspect_file(path)


def test_truncated_file(valid):
    data = valid.read_bytes()
    valid.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFileError, match=r"not a readable HDF5 file \(truncated or corrupt\?\)") as error:
        inspect_file(valid)
    assert str(valid) in str(error.value)


def test_not_an_hdf5_file_and_missing_file(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetFileError, match="truncated or corrupt"):
        inspect_file(text)
    with pytest.raises(DatasetFileError, match="does not exist"):
        inspect_file(tmp_path / "missing.h5")
    with pytest.raises(DatasetFileError, match="is not a file"):
        inspect_file(tmp_path)
