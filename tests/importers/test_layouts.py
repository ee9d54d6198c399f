"""Every layout `surrogates-import` knows, from small files written by the tests, checked value by value."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import yaml

from surrogates.data.schema import SCHEMA_VERSION, inspect_file
from surrogates.data.xarray_view import open_split
from tests.importers.conftest import (
    write_cfd,
    write_darcy,
    write_groups,
    write_tensor_1d,
    write_the_well,
    write_the_well_folder,
    write_xarray,
)


def _all(folder, name):
    """A variable of every split, concatenated (train, val, test), and the split sizes."""
    parts = [open_split(folder, split) for split in ("train", "val", "test")]
    values = np.concatenate([p[name].values for p in parts])
    sizes = [p.sizes["sample"] for p in parts]
    for p in parts:
        p.close()
    return values, sizes


def _same_samples(imported: np.ndarray, source: np.ndarray) -> None:
    """The imported samples are the source's, each once (the split permutes them)."""
    assert imported.shape == source.shape
    key = lambda a: np.sort(a.reshape(a.shape[0], -1).astype(np.float32).view(np.uint32).sum(axis=1))  # noqa: E731
    np.testing.assert_array_equal(key(imported), key(source))


def test_xarray_file_with_fraction_splits_and_provenance(run_import, tmp_path):
    source = write_xarray(tmp_path / "plain.nc", n=20)
    files = run_import(f"source={tmp_path / 'plain.nc'}", "inputs=[a]", "targets=[u]", "name=plain")
    assert [f.name for f in files] == ["train.h5", "val.h5", "test.h5"]
    info = inspect_file(files[0])
    assert info.inputs == ["a"] and info.targets == ["u"] and info.attrs["pde"] == "imported"
    assert info.attrs["schema_version"] == SCHEMA_VERSION
    for fake in ("config", "solver_report", "seed"):
        assert fake not in info.attrs
    assert json.loads(info.attrs["source"]) == [str(tmp_path / "plain.nc")]
    sums = json.loads(info.attrs["source_sha256"])
    import hashlib
    assert sums == {str(tmp_path / "plain.nc"): hashlib.sha256((tmp_path / "plain.nc").read_bytes()).hexdigest()}
    assert yaml.safe_load(info.attrs["import_config"])["inputs"] == ["a"]
    a, sizes = _all(files[0].parent, "a")
    assert sizes == [16, 2, 2]
    _same_samples(a, source["a"].values)
    u, _ = _all(files[0].parent, "u")
    np.testing.assert_allclose(u, np.sin(a.astype(np.float64)) + 0.1, rtol=1e-6)  # pairs stay together
    ds = xr.open_dataset(files[0], engine="h5netcdf")
    np.testing.assert_array_equal(ds["x"].values, source["x"].values)
    ds.close()


def test_xarray_dims_are_mapped_and_vector_components_split(run_import, tmp_path):
    rng = np.random.default_rng(1)
    v = rng.random((12, 3, 6, 5, 2))
    ds = xr.Dataset(
        {"v": (("run", "t", "lon", "lat", "component"), v), "k": (("run",), rng.random(12)),
         "mask": (("lon", "lat"), np.ones((6, 5)))},
        coords={"t": np.arange(3.0), "lon": np.linspace(0, 1, 6), "lat": np.linspace(0, 1, 5), "component": ["u", "w"]},
    )
    ds["lon"].attrs["units"] = "degree"
    ds.to_netcdf(tmp_path / "vec.nc", engine="h5netcdf")
    files = run_import(f"source={tmp_path / 'vec.nc'}", "dims.sample=run", "dims.time=t", "+dims.rename={lon: x, lat: y}",
                       "inputs=[v, k]", "targets=[v]", "periodic=[x]", "name=vec", "val_fraction=0", "test_fraction=0.25")
    info = inspect_file(files[0])
    assert set(info.variables) == {"v_u", "v_w", "k"}
    assert info.variables["v_u"].dims == ("sample", "time", "x", "y")
    assert info.variables["v_w"].attrs["field"] == "v" and info.variables["v_w"].attrs["component"] == "w"
    assert info.inputs == ["v_u", "v_w", "k"] and info.targets == ["v_u", "v_w"]
    assert info.coords["x"].attrs["units"] == "degree" and info.coords["x"].attrs["periodic"] == 1
    assert [f.name for f in files] == ["train.h5", "test.h5"]
    train = xr.open_dataset(files[0], engine="h5netcdf")
    test = xr.open_dataset(files[1], engine="h5netcdf")
    got = np.concatenate([train["v_w"].values, test["v_w"].values])
    _same_samples(got, v[..., 1].astype(np.float32))
    train.close(), test.close()


@pytest.mark.filterwarnings("ignore:saving variable a with floating point data as an integer dtype")
def test_packed_variables_and_coordinates_are_decoded(run_import, tmp_path):
    """CF packing (int16 + scale_factor / add_offset), as xarray decodes it, for data and coordinates alike."""
    source = write_xarray(tmp_path / "plain.nc", n=10)
    source = source.assign_coords(x=np.arange(8) * 0.25)
    encoding = {"x": {"dtype": "int16", "scale_factor": 0.25}, "a": {"dtype": "int16", "scale_factor": 1e-4, "add_offset": 0.5, "_FillValue": None}}
    source.to_netcdf(tmp_path / "packed.nc", engine="h5netcdf", encoding=encoding)
    decoded = xr.open_dataset(tmp_path / "packed.nc", engine="h5netcdf")
    files = run_import(f"source={tmp_path / 'packed.nc'}", "inputs=[a]", "targets=[u]", "name=packed")
    a, _ = _all(files[0].parent, "a")
    _same_samples(a, decoded["a"].values)
    imported = xr.open_dataset(files[0], engine="h5netcdf")
    np.testing.assert_array_equal(imported["x"].values, np.arange(8) * 0.25)
    imported.close(), decoded.close()


@pytest.mark.parametrize("times, units", [
    (np.array(["2000-01-31T00", "2000-01-31T06", "2000-02-01T00", "2000-03-01T00"], dtype="datetime64[ns]"),
     "seconds since 2000-01-31"),
    (np.array([0, 30, 90, 1440], dtype="timedelta64[m]"), "s"),
])
def test_a_time_of_dates_or_durations_keeps_its_steps(run_import, tmp_path, times, units):
    """xarray decodes a CF time to datetime64 (timedelta64 for durations); the import writes the steps between them as
    seconds (exact: whole seconds in float64) with CF units, not the index 0, 1, 2, 3 that hid unequal steps (dates)
    or nanoseconds under the units "1" (durations, which numpy counts as integers)."""
    u = np.random.default_rng(0).random((6, times.size, 4))
    xr.Dataset({"u": (("sample", "time", "x"), u)}, coords={"time": times}).to_netcdf(tmp_path / "dated.nc", engine="h5netcdf")
    files = run_import(f"source={tmp_path / 'dated.nc'}", "inputs=[u]", "targets=[u]")
    imported = xr.open_dataset(files[0], engine="h5netcdf", decode_times=False)
    seconds = (times - times[0]) / np.timedelta64(1, "s")
    np.testing.assert_array_equal(imported["time"].values, seconds)
    assert imported["time"].attrs["units"] == units
    imported.close()
    if units != "s":  # read back as dates by xarray, the CF way
        with xr.open_dataset(files[0], engine="h5netcdf") as decoded:
            np.testing.assert_array_equal(decoded["time"].values, times)


def test_booleans_are_imported_as_0_1_and_strings_are_noted_as_such(run_import, tmp_path, capsys):
    """A bool per sample (a flag) is data, as data=xarray reads it; a string variable is left out with a note that
    says why (it was listed among "variables without the sample dim", which it has)."""
    source = write_xarray(tmp_path / "plain.nc", n=10)
    flag = np.arange(10) % 3 == 0
    source.assign(flag=("sample", flag), label=("sample", np.array([f"run{i}" for i in range(10)]))).to_netcdf(
        tmp_path / "flags.nc", engine="h5netcdf")
    files = run_import(f"source={tmp_path / 'flags.nc'}", "inputs=[a,flag]", "targets=[u]", "val_fraction=0",
                       "test_fraction=0")
    with xr.open_dataset(files[0], engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["flag"].values, flag.astype(np.float32))
        assert "label" not in ds
    out = capsys.readouterr().out
    assert "left out variables that are not real numbers: label (<U4)" in out and "without the sample dim" not in out


def test_zarr_store(run_import, tmp_path):
    pytest.importorskip("zarr")
    source = write_xarray(tmp_path / "plain.nc", n=10)
    source.to_zarr(tmp_path / "store.zarr")
    files = run_import(f"source={tmp_path / 'store.zarr'}", "inputs=[a]", "targets=[u]")
    assert files[0].parent.name == "store"
    a, _ = _all(files[0].parent, "a")
    _same_samples(a, source["a"].values)


def test_pdebench_darcy(run_import, tmp_path):
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    src = write_darcy(path, n=20)
    files = run_import(f"source={path}", "name=darcy")
    info = inspect_file(files[0])
    assert info.attrs["pde"] == "pdebench_darcy" and info.inputs == ["nu"] and info.targets == ["u"]
    assert info.variables["u"].dims == ("sample", "x", "y") and info.variables["beta"].dims == ("sample",)
    assert "periodic" not in info.coords["x"].attrs
    nu, sizes = _all(files[0].parent, "nu")
    u, _ = _all(files[0].parent, "u")
    assert sizes == [16, 2, 2]
    _same_samples(np.concatenate([nu, u], axis=1), np.concatenate([src["nu"], src["tensor"][:, 0]], axis=1))
    beta, _ = _all(files[0].parent, "beta")
    assert (beta == 1.0).all()


@pytest.mark.parametrize("filename, pde", [
    ("1D_Burgers_Sols_Nu0.001.hdf5", "pdebench_burgers"),
    ("1D_Advection_Sols_beta0.1.hdf5", "pdebench_advection"),
    ("ReacDiff_Nu0.5_Rho1.0.hdf5", "pdebench_reaction_diffusion"),
])
def test_pdebench_1d_tensor(run_import, tmp_path, filename, pde):
    src = write_tensor_1d(tmp_path / filename, n=16, steps=6, nx=16)
    files = run_import(f"source={tmp_path / filename}", "name=one_d")
    info = inspect_file(files[0])
    assert info.attrs["pde"] == pde and info.variables["u"].dims == ("sample", "time", "x")
    assert info.coords["x"].attrs["periodic"] == 1
    ds = xr.open_dataset(files[0], engine="h5netcdf")
    np.testing.assert_allclose(ds["time"].values, src["t"][:6])  # the first T of the T + 1 values
    ds.close()
    u, sizes = _all(files[0].parent, "u")
    assert sum(sizes) == 16
    _same_samples(u, src["tensor"])
    nu, _ = _all(files[0].parent, "Nu")
    np.testing.assert_allclose(nu, 0.001, rtol=1e-6)


@pytest.mark.parametrize("filename, space, channels, pde, names", [
    ("2D_diff-react_NA_NA.h5", (8, 8), 2, "pdebench_diffusion_reaction", ["u", "v"]),
    ("1D_diff-sorp_NA_NA.h5", (16,), 1, "pdebench_diffusion_sorption", ["u"]),
    ("2D_rdb_NA_NA.h5", (8, 8), 1, "pdebench_shallow_water", ["h"]),
])
def test_pdebench_one_group_per_sample(run_import, tmp_path, filename, space, channels, pde, names):
    samples = write_groups(tmp_path / filename, n=10, steps=5, space=space, channels=channels)
    files = run_import(f"source={tmp_path / filename}", "name=groups", "chunk_size=3")
    info = inspect_file(files[0])
    assert info.attrs["pde"] == pde and sorted(info.variables) == sorted(names)
    assert info.variables[names[0]].dims == ("sample", "time", *"xyz"[: len(space)])
    stacked = np.stack(samples)
    for i, name in enumerate(names):
        got, sizes = _all(files[0].parent, name)
        assert sizes == [8, 1, 1]
        _same_samples(got, stacked[..., i])


@pytest.mark.parametrize("space", [(16,), (8, 8), (4, 4, 4)], ids=["1d", "2d", "3d"])
def test_pdebench_compressible_navier_stokes(run_import, tmp_path, space):
    name = f"{len(space)}D_CFD_Rand_Eta0.01_Zeta0.01_periodic_Train.hdf5"
    src = write_cfd(tmp_path / name, n=10, steps=4, space=space)
    files = run_import(f"source={tmp_path / name}", "name=cfd")
    info = inspect_file(files[0])
    axes = "xyz"[: len(space)]
    velocity = [f"velocity_{a}" for a in axes]
    assert info.attrs["pde"] == "pdebench_cfd"
    assert info.inputs == ["density", "pressure", *velocity] == info.targets
    assert info.variables["velocity_x"].attrs == {"units": "1", "long_name": "velocity, x component", "field": "velocity",
                                                  "component": "x"}
    assert all(info.coords[a].attrs["periodic"] == 1 for a in axes)
    for ours, theirs in [("density", "density"), ("pressure", "pressure"), *((f"velocity_{a}", f"V{a}") for a in axes)]:
        got, _ = _all(files[0].parent, ours)
        _same_samples(got, src[theirs])
    eta, _ = _all(files[0].parent, "eta")
    np.testing.assert_allclose(eta, 0.01, rtol=1e-6)


def test_the_well_file_fields_components_parameters_and_boundaries(run_import, tmp_path):
    path = tmp_path / "toy_flow_Rayleigh_1e6.hdf5"
    src = write_the_well(path, n=10)
    files = run_import(f"source={path}", "name=well")
    info = inspect_file(files[0])
    assert info.attrs["pde"] == "the_well_toy_flow"
    assert info.variables["buoyancy"].dims == ("sample", "time", "x", "y")
    assert info.variables["velocity_y"].attrs["field"] == "velocity" and info.variables["velocity_y"].attrs["component"] == "y"
    assert {"D_xx", "D_xy", "D_yx", "D_yy"} <= set(info.variables) and info.variables["D_xy"].dims == ("sample", "x", "y")
    assert info.variables["Rayleigh"].dims == ("sample",)
    assert info.targets == ["buoyancy", "velocity_x", "velocity_y"]
    assert info.inputs == ["buoyancy", "velocity_x", "velocity_y", "D_xx", "D_xy", "D_yx", "D_yy"]
    assert info.coords["x"].attrs["periodic"] == 1 and "periodic" not in info.coords["y"].attrs
    bcs = json.loads(info.attrs["boundary_conditions"])
    assert bcs["x_periodic"]["bc_type"] == "periodic" and bcs["y_wall"] == {
        "associated_dims": ["y"], "associated_fields": [], "bc_type": "wall"}
    got, sizes = _all(files[0].parent, "velocity_y")
    assert sizes == [8, 1, 1]
    _same_samples(got, src["velocity"][..., 1])
    d_xy, _ = _all(files[0].parent, "D_xy")
    _same_samples(d_xy, src["D"][..., 0, 1])
    rayleigh, _ = _all(files[0].parent, "Rayleigh")
    assert (rayleigh == 1e6).all()


def test_the_well_folder_keeps_its_splits(run_import, tmp_path):
    src = write_the_well_folder(tmp_path / "toy_flow", {"train": 2, "valid": 1, "test": 1}, n=3)
    files = run_import(f"source={tmp_path / 'toy_flow'}", "chunk_size=2")
    assert files[0].parent.name == "toy_flow"
    for split, ours in (("train", "train"), ("valid", "val"), ("test", "test")):
        ds = open_split(files[0].parent, ours)
        expected = np.concatenate([f["buoyancy"] for f in src[split]])
        np.testing.assert_array_equal(ds["buoyancy"].values, expected)  # kept in file order
        rayleigh = np.concatenate([np.full(3, 10.0 ** (6 + i)) for i in range(len(src[split]))])
        np.testing.assert_allclose(ds["Rayleigh"].values, rayleigh, rtol=1e-6)
        ds.close()


def test_the_well_train_folder_only_gets_val_and_test(run_import, tmp_path):
    write_the_well_folder(tmp_path / "toy_flow", {"train": 2}, n=5)
    files = run_import(f"source={tmp_path / 'toy_flow' / 'data' / 'train'}", "name=only_train")
    sizes = [inspect_file(f, check_finite=False).n_samples for f in files]
    assert [f.name for f in files] == ["train.h5", "val.h5", "test.h5"] and sizes == [8, 1, 1]


def test_a_glob_of_pdebench_files_is_one_pool(run_import, tmp_path):
    for beta in (0.1, 1.0):
        write_darcy(tmp_path / f"2D_DarcyFlow_beta{beta}_Train.hdf5", n=10, beta=beta, seed=int(beta * 10))
    files = run_import(f"source={tmp_path}/2D_DarcyFlow_*.hdf5", "name=darcy_all")
    beta, sizes = _all(files[0].parent, "beta")
    assert sizes == [16, 2, 2] and sorted(set(beta.tolist())) == pytest.approx([0.1, 1.0])
    assert len(json.loads(inspect_file(files[0]).attrs["source_sha256"])) == 2


def test_netcdf3_file(run_import, tmp_path):
    source = write_xarray(tmp_path / "plain.nc", n=10)
    source.to_netcdf(tmp_path / "classic.nc", engine="scipy")
    files = run_import(f"source={tmp_path / 'classic.nc'}", "inputs=[a]", "targets=[u]")
    a, _ = _all(files[0].parent, "a")
    _same_samples(a, source["a"].values)


def test_the_well_fields_constant_across_trajectories_or_dims_are_broadcast(run_import, tmp_path):
    import h5py

    path = tmp_path / "toy.hdf5"
    write_the_well(path, n=4, s=8)
    profile = np.linspace(0, 1, 8, dtype=np.float32)
    with h5py.File(path, "r+") as f:
        group = f["t0_fields"]
        group.attrs["field_names"] = ["buoyancy", "profile"]
        dset = group.create_dataset("profile", data=profile)  # varies along y only, same for every trajectory
        dset.attrs["dim_varying"] = [False, True]
        dset.attrs["sample_varying"] = False
        dset.attrs["time_varying"] = False
    files = run_import(f"source={path}", "name=bc", "val_fraction=0.25", "test_fraction=0.25")
    ds = open_split(files[0].parent, "train")
    assert ds["profile"].dims == ("sample", "x", "y")
    np.testing.assert_array_equal(ds["profile"].values, np.broadcast_to(profile, (2, 8, 8)))
    ds.close()


def test_a_single_file_has_no_split_whatever_its_folder_is_called(run_import, tmp_path):
    (tmp_path / "test").mkdir()
    write_xarray(tmp_path / "test" / "plain.nc", n=20)
    files = run_import(f"source={tmp_path / 'test' / 'plain.nc'}", "inputs=[a]", "targets=[u]")
    assert [inspect_file(f, check_finite=False).n_samples for f in files] == [16, 2, 2]


def test_split_files_of_a_glob_or_folder_are_kept_and_time_follows_sample(run_import, tmp_path):
    rng = np.random.default_rng(0)
    tmp_path = tmp_path / "src"
    tmp_path.mkdir()
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        u = rng.random((n, 5, 4))  # (sample, x, time): time is moved after sample
        xr.Dataset({"u": (("sample", "x", "time"), u)}, coords={"time": np.arange(4.0)}).to_netcdf(
            tmp_path / f"{split}.nc", engine="h5netcdf")
    for source, name in ((f"{tmp_path}/*.nc", "glob"), (str(tmp_path), "folder")):
        files = run_import(f"source={source}", "inputs=[u]", "targets=[u]", f"name={name}")
        infos = [inspect_file(f, check_finite=False) for f in files]
        assert [i.n_samples for i in infos] == [6, 2, 3]
        assert infos[0].variables["u"].dims == ("sample", "time", "x")
        ds = xr.open_dataset(tmp_path / "test.nc", engine="h5netcdf")
        got = open_split(files[0].parent, "test")
        np.testing.assert_array_equal(got["u"].values, ds["u"].transpose("sample", "time", "x").values.astype(np.float32))
        ds.close(), got.close()
