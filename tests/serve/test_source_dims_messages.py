"""A request in the dim names of a model's source file (``DataSchema.source_dims``: ``run, t, lon``) that is
refused is told so in those names, by ``Surrogate.predict``, ``RolloutSurrogate.rollout`` and the service's NetCDF
bodies alike (JSON bodies carry no dim names): the message names ``lon``, never the trained ``x``, so the user sees
which of their dims is wrong. The error codes are those of a request in the platform's names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from surrogates import Surrogate
from surrogates.serve.inputs import InputError, named_as_sent, sent_dim_names
from surrogates.serve.rollout import RolloutSurrogate
from tests.serve.conftest import folder_client
from tests.serve.test_input_time import _checkpoint as _input_time_checkpoint
from tests.serve.test_rollout_domain import PARAMS
from tests.serve.test_rollout_domain import _checkpoint as _rollout_checkpoint
from tests.serve.test_source_dims import N, _fields, _fields_checkpoint, _trajectories, _windowed_checkpoint

NETCDF = {"content-type": "application/x-netcdf"}
TRAJECTORIES = {"sample": "run", "time": "t", "x": "lon"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sdm") / "models"
    folder.mkdir()
    _fields_checkpoint(folder / "imported.ckpt")
    _windowed_checkpoint(folder / "windows.ckpt")
    _input_time_checkpoint(folder / "at-time.ckpt", input_time=2, source_dims=TRAJECTORIES)
    return folder


@pytest.fixture(scope="module")
def client(models):
    with folder_client(models) as client:
        yield client


def _fields_off_lon() -> xr.Dataset:
    return _fields().assign_coords(lon=("lon", np.linspace(0, 360, N), {"units": "deg"}))


def _fields_in_rad() -> xr.Dataset:
    return _fields().assign_coords(lon=("lon", np.linspace(0, 1, N), {"units": "rad"}))


def _fields_with_lat() -> xr.Dataset:
    ds = _fields()
    return xr.Dataset({"a": (("run", "lon", "lat"), np.repeat(ds["a"].values[..., None], 2, axis=-1))}, coords=ds.coords)


def _fields_without_lon() -> xr.Dataset:
    return xr.Dataset({"a": (("run",), np.ones(3, np.float32))}, coords={"run": [100, 101, 102]})


def _one_time(ds: xr.Dataset, n: int) -> xr.Dataset:
    return ds.isel(t=slice(0, n))


# (model, request, code, the user's dims the message names, the trained dims it must not name)
FAULTS = {
    "wrong_domain": ("imported", _fields_off_lon, "wrong_domain", ["lon"], ["x"]),
    "wrong_units": ("imported", _fields_in_rad, "wrong_units", ["lon"], ["x"]),
    "extra_dim": ("imported", _fields_with_lat, "wrong_dims", ["lon"], ["x"]),
    "missing_dim": ("imported", _fields_without_lon, "wrong_dims", ["run", "lon"], ["sample", "x"]),
    "window_too_short": ("windows", lambda: _one_time(_trajectories(), 1), "too_few_times", ["t"], ["time"]),
    "input_time_too_late": ("at-time", lambda: _one_time(_trajectories(), 2), "too_few_times", ["t"], ["time"]),
}


def _named(dim: str, message: str) -> bool:
    """Whether ``message`` names ``dim``: quoted, or bare in a layout such as ``(n, 1, x)``."""
    return re.search(rf"'{dim}'|[(] *{dim} *[,)]|, {dim} *[,)]", message) is not None


def _names_theirs(message: str, theirs: list[str], ours: list[str]) -> None:
    for dim in theirs:
        assert _named(dim, message), message
    for dim in ours:
        assert not _named(dim, message), message


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_predict_names_the_dims_as_sent(models, fault):
    model, request, _, theirs, ours = FAULTS[fault]
    with pytest.raises(ValueError) as refused:
        Surrogate.load(models / f"{model}.ckpt").predict(request())
    _names_theirs(str(refused.value), theirs, ours)


@pytest.mark.parametrize("engine", ["h5netcdf", "scipy"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_netcdf_body_is_refused_in_its_own_dim_names(client, fault, engine):
    model, request, code, theirs, ours = FAULTS[fault]
    response = client.post(f"/v1/models/{model}/predict", content=bytes(request().to_netcdf(engine=engine)), headers=NETCDF)
    assert response.status_code == 422 and response.json()["code"] == code, response.text
    _names_theirs(response.json()["detail"], theirs, ours)


def test_the_same_faults_in_the_platform_names_name_the_platform_dims(client):
    ds = _fields_off_lon().rename({"run": "sample", "lon": "x"})
    response = client.post("/v1/models/imported/predict", content=bytes(ds.to_netcdf(engine="h5netcdf")), headers=NETCDF)
    assert response.status_code == 422 and response.json()["code"] == "wrong_domain"
    assert "coordinate 'x' of the request" in response.json()["detail"] and "'lon'" not in response.json()["detail"]


@pytest.fixture(scope="module")
def rollout_model(tmp_path_factory) -> RolloutSurrogate:
    path = tmp_path_factory.mktemp("sdr") / "r.ckpt"
    return RolloutSurrogate.load(_rollout_checkpoint(path, source_dims={"sample": "run", "x": "lon"}))


def _states(lon: np.ndarray, units: str = "m", dims: tuple[str, ...] = ("run", "lon")) -> xr.DataArray:
    u = np.random.default_rng(0).normal(size=(2, len(lon), *([3] if len(dims) == 3 else []))).astype(np.float32)
    return xr.DataArray(u, dims=dims, coords={"lon": ("lon", lon, {"units": units})}, name="u")


@pytest.mark.parametrize("fault, states, code", [
    ("wrong_domain", lambda: _states(np.arange(16) / 8), "wrong_domain"),
    ("wrong_units", lambda: _states(np.arange(16) / 16, units="km"), "wrong_units"),
    ("extra_dim", lambda: _states(np.arange(16) / 16, dims=("run", "lon", "lat")), "wrong_shape"),
])
def test_rollout_names_the_dims_as_sent(rollout_model, fault, states, code):
    with pytest.raises(InputError) as refused:
        rollout_model.rollout(states(), steps=1, **PARAMS)
    assert refused.value.code == code
    _names_theirs(str(refused.value), ["lon"], ["x"])


def test_the_translation():
    names = {"sample": "run", "time": "t", "x": "lon"}
    assert named_as_sent("coordinate 'x' spans; trained on \"x\"", names) == "coordinate 'lon' spans; trained on \"lon\""
    assert named_as_sent("expected (n, 1, x) or (x); got {'sample': 3, 'xx': 1}", names) == (
        "expected (n, 1, lon) or (lon); got {'run': 3, 'xx': 1}"
    )
    assert named_as_sent("1 state(s) along its time dim; a time dim 'time'", names) == (
        "1 state(s) along its time dim 't'; a time dim 't'"
    )
    message = "input 'u' (x) along 'x'"
    assert named_as_sent(message, {}) == message
    # a request in the source's names lacking one of its dims hears it in the source's name; ours: nothing renamed
    assert sent_dim_names(names, {"run": "sample"}, ["run"]) == {"sample": "run", "time": "t", "x": "lon"}
    assert sent_dim_names(names, {"run": "sample"}, ["run", "x"]) == {"sample": "run", "time": "t"}
    assert sent_dim_names(names, {}, ["sample"]) == {}
