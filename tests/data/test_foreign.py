"""Foreign files (``data=xarray``) read as stored: what cannot be read so is refused when used, naming the variable."""

from __future__ import annotations

import warnings

import h5netcdf
import h5py
import numpy as np
import pytest
import xarray as xr

from surrogates.data.dataset import FieldDataset
from surrogates.data.foreign import ForeignLayout, inspect_foreign
from surrogates.data.schema import DatasetFileError

N, S = 6, 4


def _fields(**extra) -> xr.Dataset:
    """a (sample, x) -> u (sample, x) on a grid x, plus ``extra`` variables."""
    a = np.linspace(280.0, 300.0, N * S).reshape(N, S)
    return xr.Dataset({"a": (("sample", "x"), a), "u": (("sample", "x"), a - 273.15), **extra},
                      coords={"x": np.linspace(0.0, 1.0, S)})


def _dataset(path, inputs, targets) -> FieldDataset:
    return FieldDataset([path], inputs, targets, layout=ForeignLayout())


@pytest.mark.parametrize("plain_first", [True, False])
def test_a_name_offered_twice_is_refused_when_used(tmp_path, plain_first):
    v = np.stack([np.ones((N, S)), 2 * np.ones((N, S))], axis=-1)  # components x = 1, y = 2
    variables = {"v_x": (("sample", "x"), np.full((N, S), 99.0)), "v": (("sample", "x", "component"), v)}
    ds = _fields(**(variables if plain_first else dict(reversed(variables.items()))))
    path = tmp_path / "collide.nc"
    ds.assign_coords(component=["x", "y"]).to_netcdf(path, engine="h5netcdf")
    message = r"collide.nc: 'v_x' names both (component 'x' of variable 'v' \(dim 'component'\) and variable 'v_x'|" \
              r"variable 'v_x' and component 'x' of variable 'v' \(dim 'component'\)); rename one of them"
    for inputs in (["v_x"], ["v"], ["v_y", "v_x"]):  # by name, by field (which stands for both components)
        with pytest.raises(DatasetFileError, match=message):
            _dataset(path, inputs, ["u"])
    assert _dataset(path, ["a", "v_y"], ["u"])[0]["x"][1].unique().tolist() == [2.0]  # the rest of the file reads


def test_packed_variables_are_refused_pointing_to_the_import(tmp_path):
    path = tmp_path / "packed.nc"
    encoding = {"a": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 290.0, "_FillValue": -32767}}
    _fields().to_netcdf(path, engine="h5netcdf", encoding=encoding)
    with pytest.raises(DatasetFileError, match=r"packed.nc: variable 'a' is stored CF-encoded \((add_offset=290.0, "
                       r"scale_factor=0.01|scale_factor=0.01, add_offset=290.0)\).*surrogates-import, which decodes them"):
        _dataset(path, ["a"], ["u"])
    assert len(_dataset(path, ["u"], ["u"])) == N  # an unused packed variable does not matter
    unsigned = tmp_path / "unsigned.nc"  # 200 stored as the signed byte -56, as netCDF-3 era files do
    with h5netcdf.File(unsigned, "w") as f:
        f.dimensions = {"sample": N, "x": S}
        f.create_variable("u", ("sample", "x"), data=np.zeros((N, S), "f4"))
        f.create_variable("b", ("sample", "x"), data=np.full((N, S), 200, np.uint8).view(np.int8)).attrs["_Unsigned"] = "true"
    with pytest.raises(DatasetFileError, match=r"variable 'b' is stored CF-encoded \(_Unsigned='true'\)"):
        _dataset(unsigned, ["b"], ["u"])


def test_a_packed_coordinate_is_refused_for_the_variables_along_it(tmp_path):
    """x stored as int16 steps of 0.25 (scale_factor): read as stored, its spacing would be 1, not 0.25."""
    ds = _fields(k=(("sample", "t"), np.ones((N, 3))))
    ds = ds.assign_coords(t=np.arange(3.0), x=np.arange(S) * 0.25)
    path = tmp_path / "packed_x.nc"
    ds.to_netcdf(path, engine="h5netcdf", encoding={"x": {"dtype": "int16", "scale_factor": 0.25}})
    info = inspect_foreign(path, ForeignLayout(time_dim="none"))
    assert "x" not in info.coords and set(info.unusable_coords) == {"x"}
    with pytest.raises(DatasetFileError, match=r"packed_x.nc: variable 'a' lies along coordinate 'x', which is stored "
                       r"CF-encoded \(scale_factor=0.25\).*surrogates-import, which decodes them"):
        _dataset(path, ["a"], ["u"])
    with pytest.raises(DatasetFileError, match=r"variable 'u' lies along coordinate 'x'"):
        _dataset(path, ["k"], ["u"])
    plain = FieldDataset([path], ["k"], ["k"], layout=ForeignLayout(time_dim="none"))  # t is not packed: reads
    assert set(plain.coords) == {"t"}
    np.testing.assert_array_equal(plain.coords["t"], [0.0, 1.0, 2.0])


def test_fill_and_missing_values_are_refused_like_nan(tmp_path):
    ds = _fields()
    path = tmp_path / "filled.nc"
    ds.to_netcdf(path, engine="h5netcdf", encoding={"u": {"dtype": "float32", "_FillValue": -9999.0}})
    raw = xr.open_dataset(path, engine="h5netcdf")
    try:  # no value is missing: read as xarray reads it
        np.testing.assert_array_equal(_dataset(path, ["a"], ["u"])[3]["y"][0].numpy(), raw["u"].values[3])
    finally:
        raw.close()
    ds["u"][3, 2] = np.nan  # written as the fill value, which xarray reads as NaN
    ds.to_netcdf(path, engine="h5netcdf", encoding={"u": {"dtype": "float32", "_FillValue": -9999.0}})
    with pytest.raises(DatasetFileError, match=r"filled.nc: variable 'u' holds missing values \(_FillValue=-9999.0; "
                       r"xarray reads them as NaN\) at sample 3"):
        _dataset(path, ["a"], ["u"])
    with h5netcdf.File(tmp_path / "missing.nc", "w") as f:  # an integer variable with a missing_value
        f.dimensions = {"sample": N, "x": S}
        f.create_variable("u", ("sample", "x"), data=np.zeros((N, S), "f4"))
        counts = f.create_variable("k", ("sample", "x"), data=np.where(np.arange(N * S).reshape(N, S) == 21, -1, 5))
        counts.attrs["missing_value"] = -1
    with pytest.raises(DatasetFileError, match=r"variable 'k' holds missing values \(missing_value=-1.*at sample 5"):
        _dataset(tmp_path / "missing.nc", ["k"], ["u"])


def test_files_xarray_writes_by_default_still_read(tmp_path):
    path = tmp_path / "plain.nc"  # floats get _FillValue = NaN, bools are stored as int8 with dtype = "bool"
    _fields(mask=(("sample", "x"), np.arange(N * S).reshape(N, S) % 2 == 0)).to_netcdf(path, engine="h5netcdf")
    assert inspect_foreign(path, ForeignLayout()).unusable == {}
    item = _dataset(path, ["a", "mask"], ["u"])[1]
    np.testing.assert_array_equal(item["x"][1].numpy(), [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(item["y"][0].numpy(), _fields()["u"].values[1], rtol=1e-6)


def test_complex_and_non_numeric_variables_are_refused_naming_the_dtype(tmp_path):
    path = tmp_path / "dtypes.nc"
    with warnings.catch_warnings(), h5netcdf.File(path, "w", invalid_netcdf=True) as f:  # complex and bool are not NetCDF-4
        warnings.simplefilter("ignore")
        f.dimensions = {"sample": N, "x": S}
        f.create_variable("u", ("sample", "x"), data=np.zeros((N, S), "f4"))
        f.create_variable("c", ("sample", "x"), data=np.full((N, S), 1 + 5j))
        f.create_variable("flag", ("sample",), data=np.arange(N) % 2 == 0)  # a native HDF5 bool: read as 0 / 1
        f.create_variable("name", ("sample",), dtype=h5py.string_dtype())[:] = np.array(["run"] * N, dtype=object)
    with pytest.raises(DatasetFileError, match=r"dtypes.nc: variable 'c' is stored as complex128: .* drop the imaginary part"):
        _dataset(path, ["c"], ["u"])
    with pytest.raises(DatasetFileError, match=r"variable 'name' is stored as object, not as numbers"):
        _dataset(path, ["u", "name"], ["u"])
    assert _dataset(path, ["flag"], ["u"])[1]["x"].unique().tolist() == [0.0]
