"""A model trained on data imported from a user's xarray file predicts on that file as it is, in its own dim names."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from surrogates import Surrogate
from surrogates.cli.train import train
from surrogates.schema import DataSchema, SchemaError
from tests.importers.test_train import TINY


def _checkpoint(compose_cfg, data_dir: Path, *overrides: str) -> Path:
    cfg = compose_cfg("train", [f"data.data_dir={data_dir}", *TINY, *overrides])
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"


def _fields_file(path: Path, n: int = 12) -> xr.Dataset:
    """``a (run, lon, lat) -> u (run, lon, lat)`` on a lon/lat grid, as a user's own tools write it."""
    rng = np.random.default_rng(0)
    a = rng.random((n, 8, 6))
    ds = xr.Dataset(
        {"a": (("run", "lon", "lat"), a), "u": (("run", "lon", "lat"), np.sin(a) + 0.1)},
        coords={"run": np.arange(100, 100 + n), "lon": np.linspace(0.0, 350.0, 8), "lat": np.linspace(-50.0, 50.0, 6)},
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return ds


def _trajectory_file(path: Path, n: int = 12, steps: int = 4) -> xr.Dataset:
    """``u (run, t, lon)``: trajectories with their own time and space names."""
    rng = np.random.default_rng(1)
    u = np.cumsum(rng.random((n, steps, 16)), axis=1)
    ds = xr.Dataset(
        {"u": (("run", "t", "lon"), u)},
        coords={"t": ("t", np.arange(steps) * 0.5, {"units": "s"}), "lon": np.linspace(0.0, 1.0, 16, endpoint=False)},
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return ds


@pytest.fixture
def fields_model(run_import, compose_cfg, tmp_path):
    source = _fields_file(tmp_path / "user.nc")
    files = run_import(f"source={tmp_path / 'user.nc'}", "inputs=[a]", "targets=[u]", "dims.sample=run",
                       "+dims.rename={lon: x, lat: y}")
    return source, files, Surrogate.load(_checkpoint(compose_cfg, files[0].parent, "experiment=darcy_fno_demo"))


def test_the_import_records_the_source_dims(fields_model):
    _, files, surrogate = fields_model
    with h5py.File(files[0], "r") as f:
        assert json.loads(f.attrs["source_dims"]) == {"sample": "run", "x": "lon", "y": "lat"}
    assert surrogate.schema.source_dims == {"sample": "run", "x": "lon", "y": "lat"}
    assert DataSchema.from_dict(surrogate.schema.to_dict()) == surrogate.schema


def test_predict_takes_and_answers_the_source_layout(fields_model):
    source, _, surrogate = fields_model
    out = surrogate.predict(source[["a"]].isel(run=slice(0, 3)))
    assert out["u"].dims == ("run", "lon", "lat")
    np.testing.assert_array_equal(out["lon"].values, source["lon"].values)
    np.testing.assert_array_equal(out["lat"].values, source["lat"].values)
    np.testing.assert_array_equal(out["run"].values, source["run"].values[:3])
    # the same numbers as in the platform's names, which are still accepted
    ours = source[["a"]].isel(run=slice(0, 3)).rename({"run": "sample", "lon": "x", "lat": "y"})
    plain = surrogate.predict(ours)
    assert plain["u"].dims == ("sample", "x", "y")
    np.testing.assert_array_equal(plain["u"].values, out["u"].values)
    one = surrogate.predict(source[["a"]].isel(run=0))  # one sample, without the sample dim
    assert one["u"].dims == ("lon", "lat")


def test_a_schema_without_source_dims_loads_and_predicts_in_our_names(fields_model):
    source, _, surrogate = fields_model
    raw = surrogate.schema.to_dict()
    del raw["source_dims"]  # as checkpoints written before imports recorded it
    old = Surrogate(surrogate.predictor, DataSchema.from_dict(raw), surrogate.metadata)
    assert old.schema.source_dims is None
    ours = source[["a"]].isel(run=slice(0, 2)).rename({"run": "sample", "lon": "x", "lat": "y"})
    assert old.predict(ours)["u"].dims == ("sample", "x", "y")
    with pytest.raises(ValueError, match="'a'"):
        old.predict(source[["a"]].isel(run=slice(0, 2)))


def test_a_malformed_source_dims_is_refused():
    with pytest.raises(SchemaError, match="source_dims"):
        DataSchema.from_dict({"source_dims": {"x": 3}})
    with pytest.raises(SchemaError, match="source_dims"):
        DataSchema.from_dict({"source_dims": {"x": "lon", "y": "lon"}})


def test_trajectory_windows_answer_in_the_source_time_and_space(run_import, compose_cfg, tmp_path):
    source = _trajectory_file(tmp_path / "traj.nc")
    files = run_import(f"source={tmp_path / 'traj.nc'}", "inputs=[u]", "targets=[u]", "dims.sample=run", "dims.time=t",
                       "+dims.rename={lon: x}", "periodic=[lon]")
    surrogate = Surrogate.load(_checkpoint(
        compose_cfg, files[0].parent, "experiment=burgers_fno", "data.inputs=[u]", "data.targets=[u]",
        "data.input_time=null", "data.target_time=null", "data.n_steps_input=2", "data.n_steps_output=1",
    ))
    assert surrogate.schema.source_dims == {"sample": "run", "time": "t", "x": "lon"}
    out = surrogate.predict(source.isel(run=slice(0, 3)))
    assert out["u"].dims == ("run", "t", "lon")
    np.testing.assert_allclose(out["t"].values, [2.0])  # the inputs' times continued by one step
    assert out["t"].attrs.get("units") == "s"
    np.testing.assert_array_equal(out["lon"].values, source["lon"].values)
    ours = source.isel(run=slice(0, 3)).rename({"run": "sample", "t": "time", "lon": "x"})
    np.testing.assert_array_equal(surrogate.predict(ours)["u"].values, out["u"].values)


def test_trajectory_at_one_time_index(run_import, compose_cfg, tmp_path):
    source = _trajectory_file(tmp_path / "traj.nc")
    files = run_import(f"source={tmp_path / 'traj.nc'}", "inputs=[u]", "targets=[u]", "dims.sample=run", "dims.time=t",
                       "+dims.rename={lon: x}", "periodic=[lon]")
    surrogate = Surrogate.load(_checkpoint(compose_cfg, files[0].parent, "experiment=burgers_fno", "data.inputs=[u]",
                                           "data.targets=[u]", "data.input_time=0", "data.target_time=-1"))
    out = surrogate.predict(source.isel(run=slice(0, 2)))  # u at t[0] in, u at t[-1] out
    assert out["u"].dims == ("run", "lon")
    # a schema without the mapping (a model trained before it): the platform's names only
    old = Surrogate(surrogate.predictor, replace(surrogate.schema, source_dims=None), surrogate.metadata)
    ours = source.isel(run=slice(0, 2)).rename({"run": "sample", "t": "time", "lon": "x"})
    np.testing.assert_array_equal(old.predict(ours)["u"].values, out["u"].values)


def test_a_vector_field_is_answered_whole_in_the_source_layout(run_import, compose_cfg, tmp_path):
    rng = np.random.default_rng(2)
    a = rng.random((12, 8, 6))
    source = xr.Dataset(
        {"a": (("run", "lon", "lat"), a), "v": (("run", "lon", "lat", "component"), np.stack([a, -a], axis=-1))},
        coords={"lon": np.linspace(0.0, 350.0, 8), "lat": np.linspace(-50.0, 50.0, 6), "component": ["east", "north"]},
    )
    source.to_netcdf(tmp_path / "vec.nc", engine="h5netcdf")
    files = run_import(f"source={tmp_path / 'vec.nc'}", "inputs=[a]", "targets=[v]", "dims.sample=run",
                       "+dims.rename={lon: x, lat: y}")
    surrogate = Surrogate.load(_checkpoint(compose_cfg, files[0].parent, "experiment=darcy_fno_demo",
                                           "data.inputs=[a]", "data.targets=[v]"))
    out = surrogate.predict(source[["a"]].isel(run=slice(0, 2)))
    assert out["v"].dims == ("run", "lon", "lat", "component")
    assert list(out["component"].values) == ["east", "north"]
