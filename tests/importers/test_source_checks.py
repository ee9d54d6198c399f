"""Sources that must be refused before anything is written, or read in their own order: files of one import whose grids
differ, a resumed import whose source files moved between names, names that collide, malformed metadata of The
Well and PDEBench coordinates that do not fit their fields."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from surrogates.data.generation import GenerationError
from surrogates.data.importers import ImportDataError, ImportSettings, import_dataset
from surrogates.data.xarray_view import open_split
from tests.importers.conftest import write_cfd, write_darcy, write_groups, write_tensor_1d, write_the_well


def _import(source: Path | str, out: Path, **kwargs) -> list[Path]:
    return import_dataset(ImportSettings(source=str(source), data_dir=out, progress=False, **kwargs))


def _write_plain(path: Path, first_id: int, n: int = 8, x: np.ndarray | None = None, units: str = "1") -> None:
    """``a (sample, x)``, ``u (sample, x)`` with the sample's id in ``a[:, 0]``."""
    x = np.arange(4, dtype=np.float64) if x is None else x
    a = np.zeros((n, x.size))
    a[:, 0] = first_id + np.arange(n)
    xr.Dataset({"a": (("sample", "x"), a), "u": (("sample", "x"), a + 0.5)},
               coords={"x": ("x", x, {"units": units})}).to_netcdf(path, engine="h5netcdf")


# -- resuming: the fingerprint records which file is where ---------------------------------------------------------
def test_a_resumed_import_refuses_source_files_that_traded_names_and_resumes_a_moved_folder(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(2):
        _write_plain(src / f"run_{k}.nc", 100 * k)
    settings = {"inputs": ["a"], "targets": ["u"], "val_fraction": 0.25, "test_fraction": 0.25}
    files = _import(src, tmp_path / "out", **settings)
    for path in files[1:]:
        path.unlink()  # an interrupted first run: train.h5 complete, val.h5 and test.h5 missing

    moved = tmp_path / "elsewhere"  # the same files under another folder: the same pool, resumed
    shutil.copytree(src, moved)
    _import(moved, tmp_path / "out", **settings)
    assert "train.h5 is complete; skipping" in capsys.readouterr().out
    ids = [set(open_split(tmp_path / "out", split)["a"].values[:, 0].astype(int).tolist()) for split in ("train", "val", "test")]
    assert sum(map(len, ids)) == 16 and set.union(*ids) == set(range(8)) | set(range(100, 108))

    # the same bytes under swapped names: the pool's order, hence the split, differs
    os.rename(src / "run_0.nc", src / "tmp.nc")
    os.rename(src / "run_1.nc", src / "run_0.nc")
    os.rename(src / "tmp.nc", src / "run_1.nc")
    with pytest.raises(GenerationError, match=r"source_sha256 \[\[\"run_0.nc\".*overwrite=true"):
        _import(src, tmp_path / "out", **settings)
    os.rename(src / "run_1.nc", src / "run_2.nc")  # a renamed file is another source too
    with pytest.raises(GenerationError, match="source_sha256"):
        _import(src, tmp_path / "out", **settings)


# -- several files, one grid ----------------------------------------------------------------------------------------
def test_xarray_files_whose_grids_differ_are_refused_naming_both_and_the_difference(tmp_path):
    _write_plain(tmp_path / "part0.nc", 0, x=np.linspace(0, 1, 4), units="m")
    _write_plain(tmp_path / "part1.nc", 100, x=np.linspace(0, 1000, 4), units="mm")
    with pytest.raises(ImportDataError, match=r"part1.nc does not match .*part0.nc: coordinate 'x' units 'mm' vs 'm'"):
        _import(f"{tmp_path}/part*.nc", tmp_path / "out", inputs=["a"], targets=["u"])
    _write_plain(tmp_path / "part1.nc", 100, x=np.linspace(0, 2, 4), units="m")
    with pytest.raises(ImportDataError, match=r"part1.nc does not match .*part0.nc: coordinate 'x' values x\[1\] = "
                                              r"0.666666667 vs 0.333333333"):
        _import(f"{tmp_path}/part*.nc", tmp_path / "out", inputs=["a"], targets=["u"])


def test_the_same_grid_stored_in_float32_and_float64_is_one_grid(tmp_path):
    x = np.linspace(0, 0.7, 4)
    _write_plain(tmp_path / "part0.nc", 0, x=x)
    _write_plain(tmp_path / "part1.nc", 100, x=x.astype(np.float32))
    files = _import(f"{tmp_path}/part*.nc", tmp_path / "out", inputs=["a"], targets=["u"])
    np.testing.assert_array_equal(open_split(files[0].parent, "train")["x"].values, x)


def test_pdebench_files_whose_times_differ_are_refused(tmp_path):
    for k, scale in enumerate((1.0, 10.0)):
        path = tmp_path / f"1D_Burgers_Sols_Nu0.00{k + 1}.hdf5"
        write_tensor_1d(path, n=6, nx=8, seed=k)
        with h5py.File(path, "r+") as f:
            f["t-coordinate"][...] *= scale
    with pytest.raises(ImportDataError, match=r"Nu0.002.hdf5 does not match .*Nu0.001.hdf5: coordinate 'time' values"):
        _import(f"{tmp_path}/*.hdf5", tmp_path / "out")


def test_the_well_files_whose_boundary_conditions_differ_are_refused(tmp_path):
    for k in range(2):
        write_the_well(tmp_path / f"toy_{k}.hdf5", n=2, steps=3, s=4, seed=k)
    with h5py.File(tmp_path / "toy_1.hdf5", "r+") as f:
        f["boundary_conditions/y_wall"].attrs["bc_type"] = "OPEN"  # same grid, same periodic flags
    with pytest.raises(ImportDataError, match=r"toy_1.hdf5 does not match .*toy_0.hdf5: attribute 'boundary_conditions'"):
        _import(tmp_path, tmp_path / "out")


# -- names ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("plain_first", [False, True])
def test_a_variable_named_like_a_vector_component_is_refused(tmp_path, plain_first):
    n, s = 4, 3
    variables = {"v": (("sample", "x", "component"), np.ones((n, s, 2))), "v_x": (("sample", "x"), np.full((n, s), 9.0)),
                 "u": (("sample", "x"), np.zeros((n, s)))}
    if plain_first:
        variables = {key: variables[key] for key in ("v_x", "v", "u")}
    path = tmp_path / "collide.nc"
    xr.Dataset(variables, coords={"component": ["x", "y"]}).to_netcdf(path, engine="h5netcdf")
    component, plain = r"component 'x' of 'v' \(dim 'component'\)", "variable 'v_x'"
    pair = f"{plain} and {component}" if plain_first else f"{component} and {plain}"  # in the file's order
    with pytest.raises(ImportDataError, match=rf"^{path}: two variables make the variable 'v_x': {pair}") as error:
        _import(path, tmp_path / "out", inputs=["v"], targets=["u"])
    assert "unknown layout" not in str(error.value)  # a file of the xarray layout with a fault, not another layout
    assert not (tmp_path / "out").exists()


# -- The Well's metadata --------------------------------------------------------------------------------------------
def _n_trajectories(value):
    def edit(f):
        f.attrs["n_trajectories"] = value
    return edit


def _field_on_6x6(f):
    del f["t0_fields/buoyancy"]
    dset = f["t0_fields"].create_dataset("buoyancy", data=np.zeros((4, 5, 6, 6), np.float32))
    dset.attrs["dim_varying"], dset.attrs["sample_varying"], dset.attrs["time_varying"] = [True, True], True, True


def _scalar_per_trajectory_of_3(f):
    del f["scalars/Rayleigh"]
    f["scalars"].create_dataset("Rayleigh", data=np.ones(3)).attrs["sample_varying"] = True


@pytest.mark.parametrize("edit, message", [
    (_n_trajectories(10), r"t0_fields/buoyancy holds 4 trajectories .* but n_trajectories is 10"),
    (_n_trajectories(2), r"t0_fields/buoyancy holds 4 trajectories .* but n_trajectories is 2"),
    (_n_trajectories(0), r"the attribute n_trajectories is 0; expected a positive integer"),
    (_field_on_6x6, r"t0_fields/buoyancy has shape \(4, 5, 6, 6\); expected \(4, 5, 8, 8\) = \(n_trajectories, time, x, y\)"),
    (lambda f: f.__delitem__("dimensions/time"), r"dimensions/time holds nothing; expected a dataset with the times"),
    (lambda f: f.__delitem__("dimensions/y"), r"dimensions/y holds nothing; expected a dataset with the coordinate"),
    (lambda f: f.__delitem__("t1_fields/velocity"), r"t1_fields/velocity holds nothing; expected a dataset with the field"),
    (_scalar_per_trajectory_of_3, r"scalars/Rayleigh has shape \(3,\); expected \(4,\) = \(n_trajectories\)"),
], ids=["n_traj_10", "n_traj_2", "n_traj_0", "grid", "no_time", "no_y", "no_field", "scalar"])
def test_malformed_the_well_metadata_is_refused_naming_the_file(tmp_path, edit, message):
    path = tmp_path / "toy.hdf5"
    write_the_well(path, n=4, steps=5, s=8)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(ImportDataError, match=rf"^{tmp_path / 'toy.hdf5'}: {message}"):
        _import(path, tmp_path / "out")


# -- PDEBench: order of per-sample groups, coordinates -------------------------------------------------------------
@pytest.mark.parametrize("names", [[str(i) for i in range(12)], [str(i).zfill(4) for i in range(9997, 10003)]],
                         ids=["unpadded", "past_9999"])
def test_pdebench_groups_are_samples_in_numeric_order(tmp_path, names):
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    with h5py.File(path, "w") as f:
        for i, key in enumerate(names):
            f.create_dataset(f"{key}/data", data=np.full((2, 3, 3, 2), float(i), np.float32))
            for axis in "xy":
                f.create_dataset(f"{key}/grid/{axis}", data=np.linspace(-1, 1, 3))
            f.create_dataset(f"{key}/grid/t", data=np.linspace(0, 1, 3))
    files = _import(path, tmp_path / "out", val_fraction=0.0, test_fraction=0.0)
    np.testing.assert_array_equal(open_split(files[0].parent, "train")["u"].values[:, 0, 0, 0], np.arange(len(names)))


def _replace(key, values):
    def edit(f):
        del f[key]
        f[key] = values
    return edit


@pytest.mark.parametrize("write, edit, message", [
    (write_darcy, _replace("x-coordinate", np.linspace(0, 1, 5)),
     r"x-coordinate has shape \(5,\) \(float64\); expected 1-D numbers, 8 values, one per point along axis 1 of nu"),
    (write_darcy, _replace("x-coordinate", np.zeros((8, 8))), r"x-coordinate has shape \(8, 8\)"),
    (write_tensor_1d, _replace("x-coordinate", np.zeros(3)),
     r"x-coordinate has shape \(3,\) \(float64\); expected 1-D numbers, 16 values, one per point along axis 2 of tensor"),
    (write_tensor_1d, _replace("t-coordinate", np.zeros((7, 2))), r"the time coordinate t-coordinate has shape \(7, 2\)"),
], ids=["darcy_short", "darcy_2d", "burgers_x", "burgers_t_2d"])
def test_pdebench_coordinates_that_do_not_fit_the_fields_name_the_source(tmp_path, write, edit, message):
    path = tmp_path / ("2D_DarcyFlow_beta1.0_Train.hdf5" if write is write_darcy else "1D_Burgers_Sols_Nu0.001.hdf5")
    write(path, n=6)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(ImportDataError, match=rf"^{path}: {message}"):
        _import(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("axis", ["x", "t"])
def test_pdebench_groups_on_different_grids_are_refused(tmp_path, axis):
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    write_groups(path, n=6, steps=3, space=(4, 4))
    with h5py.File(path, "r+") as f:  # sample 4 on a grid twice as wide
        values = f[f"0004/grid/{axis}"][...] * 2
        del f[f"0004/grid/{axis}"]
        f[f"0004/grid/{axis}"] = values
    with pytest.raises(ImportDataError, match=rf"^{path}: 0004/grid/{axis} differs from 0000/grid/{axis}"):
        _import(path, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.h5"))


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.__delitem__("0003/data"), r"group 0003 has no dataset data \(it holds \['grid'\]\)"),
    (lambda f: (f.__delitem__("0003"), f.create_dataset("0003", data=np.zeros(3))), r"0003 is a dataset, not a group"),
    (lambda f: (f.__delitem__("0003/data"), f.create_dataset("0003/data", data=np.zeros((3, 4, 4, 1)))),
     r"0003/data has shape \(3, 4, 4, 1\)"),
])
def test_a_pdebench_group_that_is_no_sample_is_named_before_reading(tmp_path, edit, message):
    """Only the first group was checked while planning: a later one without data failed mid-import with h5py's
    KeyError (a traceback) or an unrelated ValueError."""
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    write_groups(path, n=6, steps=3, space=(4, 4))
    with h5py.File(path, "r+") as f:
        edit(f)
    expected = rf"^{path}: {message}; expected 0003/data \(3, 4, 4, 2\) like 0000/data \(one group per sample\)$"
    with pytest.raises(ImportDataError, match=expected):
        _import(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_coordinate_with_nan_is_refused_naming_the_source(tmp_path):
    u = np.random.default_rng(0).random((6, 4))
    xr.Dataset({"u": (("sample", "x"), u)}, coords={"x": [0.0, 1.0, np.nan, 3.0]}).to_netcdf(tmp_path / "holes.nc")
    with pytest.raises(ImportDataError, match=rf"^{tmp_path / 'holes.nc'}: coordinate 'x' has NaN or infinite values "
                                              r"\(x\[2\] = nan\); expected finite numbers"):
        _import(tmp_path / "holes.nc", tmp_path / "out", inputs=["u"], targets=["u"])
    assert not (tmp_path / "out").exists()


def test_a_per_sample_coordinate_named_like_the_time_dim_leaves_the_time_axis_alone(tmp_path):
    """xarray reads a variable ``time (sample)`` beside a dim ``time`` as a coordinate along the sample dim; its 6
    values were taken for the 3 times, and the import failed mid-write with a shape error."""
    u = np.random.default_rng(0).random((6, 3, 4))
    xr.Dataset({"u": (("sample", "time", "x"), u), "time": (("sample",), np.arange(6.0))}).to_netcdf(tmp_path / "t.nc")
    files = _import(tmp_path / "t.nc", tmp_path / "out", inputs=["u"], targets=["u"], val_fraction=0.0, test_fraction=0.0)
    with xr.open_dataset(files[0], engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["time"].values, np.arange(3.0))  # no time values in the file: the index
        np.testing.assert_array_equal(ds["u"].values, u.astype(np.float32))


def test_a_the_well_scalar_named_like_a_dim_is_refused_naming_the_source(tmp_path):
    path = tmp_path / "toy.hdf5"
    write_the_well(path, n=4)
    with h5py.File(path, "r+") as f:
        f["scalars"].attrs["field_names"] = ["Rayleigh", "Prandtl", "x"]
        f["scalars"].create_dataset("x", data=np.arange(4.0))
        f["scalars/x"].attrs["sample_varying"] = True
    with pytest.raises(ImportDataError, match=rf"^{path}: a variable and the coordinate of the dim 'x' have one name"):
        _import(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("write, name, key, message", [
    (write_tensor_1d, "1D_Burgers_Sols_Nu0.001.hdf5", "x-coordinate", r"unknown layout .*found HDF5 with .*x-coordinate/"),
    (write_tensor_1d, "1D_Burgers_Sols_Nu0.001.hdf5", "tensor", r"unknown layout .*found HDF5 with .*tensor/"),
    (write_darcy, "2D_DarcyFlow_beta1.0_Train.hdf5", "nu", r"unknown layout .*found HDF5 with nu/"),
    (write_cfd, "2D_CFD_periodic_Train.hdf5", "pressure", r"unknown layout .*pressure/"),
    (write_cfd, "2D_CFD_periodic_Train.hdf5", "Vy", r"PDEBench 2D CFD layout needs a dataset Vy"),
])
def test_a_pdebench_name_holding_a_group_is_refused_in_one_line(tmp_path, write, name, key, message):
    """A group where PDEBench has a dataset failed with h5py's TypeError or AttributeError ('Group' object has no
    attribute 'ndim')."""
    path = tmp_path / name
    write(path)
    with h5py.File(path, "r+") as f:
        del f[key]
        f.create_group(key)
    with pytest.raises(ImportDataError, match=rf"^{path}: {message}"):
        _import(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_the_well_simulation_parameter_that_is_no_number_is_left_out_with_a_note(tmp_path, capsys):
    """It failed with "could not convert string to float: np.str_('upwind')", naming neither the file nor the
    attribute."""
    path = tmp_path / "toy.hdf5"
    write_the_well(path, n=4)
    with h5py.File(path, "r+") as f:
        f.attrs["simulation_parameters"] = ["Rayleigh", "Prandtl", "scheme"]
        f.attrs["scheme"] = "upwind"
    files = _import(path, tmp_path / "out")
    assert "toy.hdf5: left out simulation parameters that are not one number: scheme = 'upwind'" in capsys.readouterr().out
    with xr.open_dataset(files[0], engine="h5netcdf") as ds:
        assert "scheme" not in ds and (ds["Rayleigh"].values == 1e6).all()


def test_a_the_well_grid_per_trajectory_is_refused_saying_so(tmp_path):
    """dimensions/x (n_trajectories, W) with sample_varying was refused as "expected 1-D numbers", which did not say
    that per-trajectory grids are what the one grid of the output files cannot hold."""
    path = tmp_path / "toy.hdf5"
    write_the_well(path, n=4, s=8)
    with h5py.File(path, "r+") as f:
        x = f["dimensions/x"][...]
        del f["dimensions/x"]
        f["dimensions/x"] = np.stack([x * (1 + k) for k in range(4)])
        f["dimensions/x"].attrs["sample_varying"] = True
    with pytest.raises(ImportDataError, match=rf"^{path}: dimensions/x \(4, 8\) holds one grid per trajectory "
                                              r"\(sample_varying\); the imported samples share one grid"):
        _import(path, tmp_path / "out")
