"""A model trained on data imported from a user's file (``DataSchema.source_dims``) takes NetCDF bodies in that
file's dim names over HTTP and answers in them, as ``Surrogate.predict`` does (one renaming,
``trained_dim_names`` / ``source_dim_names``); bodies in the platform's names keep working."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import Surrogate, __version__
from surrogates.checkpoint import CheckpointMetadata, ClassSpec, write_checkpoint
from surrogates.models.fno import FNO
from surrogates.models.normalized import NormalizedOperator
from surrogates.nn.normalization import Normalizer
from surrogates.serve.inputs import source_dim_names, trained_dim_names
from tests.serve.conftest import folder_client

N, T = 16, 4
NETCDF = {"content-type": "application/x-netcdf"}
FIELDS = {"sample": "run", "x": "lon"}
WINDOWS = {"sample": "run", "time": "t", "x": "lon"}


def _net(c_in: int, c_out: int) -> NormalizedOperator:
    torch.manual_seed(0)
    net = FNO(in_channels=c_in, out_channels=c_out, dim=1, modes=4, width=8, n_layers=2)
    return NormalizedOperator(net, Normalizer.from_stats([0.5] * c_in, [2.0] * c_in), Normalizer.from_stats([0.1] * c_out, [0.5] * c_out))


def _write(path: Path, model: NormalizedOperator, schema: dict) -> Path:
    metadata = CheckpointMetadata(kind="operator", model=ClassSpec.from_dict(model.net.init_config(), "model"),
                                  package_version=__version__, data_schema=schema)
    return write_checkpoint(path, metadata, model.state_dict())


def _fields_checkpoint(path: Path, source_dims: dict | None = FIELDS) -> Path:
    """An untrained 1D FNO ``a -> u`` on x in [0, 1], as trained on a user's ``a (run, lon)`` imported as
    ``a (sample, x)`` (without ``source_dims``: a model of other data)."""
    schema = {
        "inputs": ["a"], "targets": ["u"], "spatial_dims": ["x"], "spatial_shape": [N],
        "variables": {"a": ["sample", "x"], "u": ["sample", "x"]},
        "coords": {"x": {"size": N, "units": "deg", "min": 0.0, "max": 1.0, "boundary": "bounded"}},
    }
    if source_dims is not None:
        schema["source_dims"] = source_dims
    return _write(path, _net(1, 1), schema)


def _windowed_checkpoint(path: Path) -> Path:
    """An untrained 1D FNO on windows of 2 states of ``u`` -> the next one, trained on a user's ``u (run, t, lon)``."""
    schema = {
        "inputs": ["u_t0", "u_t1"], "targets": ["u_t2"], "spatial_dims": ["x"], "spatial_shape": [N],
        "variables": {name: ["sample", "x"] for name in ("u_t0", "u_t1", "u_t2")},
        "window": {"inputs": ["u"], "targets": ["u"], "n_steps_input": 2, "n_steps_output": 1},
        "source_dims": WINDOWS,
    }
    return _write(path, _net(2, 1), schema)


def _fields(n: int = 3) -> xr.Dataset:
    """A request in the user's names: ``a (run, lon)`` with their coordinates."""
    a = np.random.default_rng(0).normal(size=(n, N)).astype(np.float32)
    return xr.Dataset({"a": (("run", "lon"), a)},
                      coords={"run": np.arange(100, 100 + n), "lon": ("lon", np.linspace(0, 1, N), {"units": "deg"})})


def _trajectories(n: int = 3) -> xr.Dataset:
    u = np.random.default_rng(1).normal(size=(n, T, N)).astype(np.float32)
    return xr.Dataset({"u": (("run", "t", "lon"), u)},
                      coords={"t": ("t", np.arange(T) * 0.5, {"units": "s"}), "lon": np.linspace(0, 1, N)})


def _post(client, name: str, ds: xr.Dataset) -> xr.Dataset:
    response = client.post(f"/v1/models/{name}/predict", content=bytes(ds.to_netcdf(engine="h5netcdf")), headers=NETCDF)
    assert response.status_code == 200, response.text
    return xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf").load()


@pytest.fixture
def served(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    _fields_checkpoint(models / "imported.ckpt")
    _fields_checkpoint(models / "plain.ckpt", source_dims=None)
    _windowed_checkpoint(models / "windows.ckpt")
    with folder_client(models) as client:
        yield models, client


def test_the_renaming_in_and_out():
    renames = trained_dim_names(WINDOWS, ["run", "lon"], ["run", "lon", "a"])
    assert renames == {"run": "sample", "lon": "x"}  # only the dims the input has
    assert source_dim_names(renames) == {"sample": "run", "x": "lon"}
    assert trained_dim_names(FIELDS, ["sample", "x"], ["sample", "x"]) == {}  # the platform's names: nothing
    assert trained_dim_names(FIELDS, ["run", "x"], ["run", "x"]) == {"run": "sample"}  # mixed: lon is not there
    assert trained_dim_names(None, ["run", "lon"], []) == {}


@pytest.mark.parametrize("engine", ["h5netcdf", "scipy"])
def test_a_body_in_the_source_names_is_answered_in_them_as_predict_answers(served, engine):
    models, client = served
    ds = _fields()
    response = client.post("/v1/models/imported/predict", content=bytes(ds.to_netcdf(engine=engine)), headers=NETCDF)
    assert response.status_code == 200, response.text
    http = xr.open_dataset(io.BytesIO(response.content), engine=engine).load()
    python = Surrogate.load(models / "imported.ckpt").predict(ds)
    assert http["u"].dims == python["u"].dims == ("run", "lon")
    np.testing.assert_allclose(http["u"].values, python["u"].values, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(http["lon"].values, ds["lon"].values)
    np.testing.assert_array_equal(http["run"].values, ds["run"].values)
    assert http["lon"].attrs.get("units") == "deg"
    # one sample, without the run dim
    one = _post(client, "imported", ds.isel(run=0))
    assert one["u"].dims == ("lon",)
    np.testing.assert_allclose(one["u"].values, python["u"].values[0], rtol=1e-6, atol=1e-6)


def test_a_body_in_the_platform_names_is_still_answered_in_them(served):
    _, client = served
    ds = _fields()
    ours = _post(client, "imported", ds.rename({"run": "sample", "lon": "x"}))
    assert ours["u"].dims == ("sample", "x")
    np.testing.assert_allclose(ours["u"].values, _post(client, "imported", ds)["u"].values, rtol=1e-6, atol=1e-6)


def test_the_source_names_are_still_checked(served):
    _, client = served
    off = _fields().assign_coords(lon=np.linspace(0, 360, N))  # another domain, in the user's names
    response = client.post("/v1/models/imported/predict", content=bytes(off.to_netcdf(engine="h5netcdf")), headers=NETCDF)
    assert response.status_code == 422 and response.json()["code"] == "wrong_domain"


def test_a_model_without_source_dims_takes_only_the_platform_names(served):
    _, client = served
    ds = _fields()
    assert _post(client, "plain", ds.rename({"run": "sample", "lon": "x"}))["u"].dims == ("sample", "x")
    response = client.post("/v1/models/plain/predict", content=bytes(ds.to_netcdf(engine="h5netcdf")), headers=NETCDF)
    assert response.status_code == 422 and response.json()["code"] == "wrong_dims"


def test_trajectory_windows_in_the_source_names(served):
    models, client = served
    ds = _trajectories()
    http = _post(client, "windows", ds)
    python = Surrogate.load(models / "windows.ckpt").predict(ds)
    assert http["u"].dims == python["u"].dims == ("run", "t", "lon")
    np.testing.assert_allclose(http["u"].values, python["u"].values, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(http["t"].values, [2.0])  # the inputs' times continued
    assert http["t"].attrs.get("units") == "s"
    ours = _post(client, "windows", ds.rename({"run": "sample", "t": "time", "lon": "x"}))
    assert ours["u"].dims == ("sample", "time", "x")
    np.testing.assert_allclose(ours["u"].values, http["u"].values, rtol=1e-6, atol=1e-6)


def test_the_model_listing_shows_the_source_dims(served):
    _, client = served
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["imported"]["data_schema"]["source_dims"] == FIELDS
    assert models["plain"]["data_schema"].get("source_dims") is None
