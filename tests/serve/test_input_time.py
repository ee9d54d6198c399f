"""A one-state operator model trained on the state at ``input_time`` of trajectories takes the trajectories
themselves, in ``Surrogate.predict`` and over HTTP alike (one shared selection, ``input_time_index``)."""

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
from surrogates.serve.inputs import InputError
from tests.serve.conftest import folder_client

N, T, INPUT_TIME = 16, 5, 2
NETCDF = {"content-type": "application/x-netcdf"}


def _checkpoint(path: Path, input_time: int | None = INPUT_TIME, source_dims: dict[str, str] | None = None) -> Path:
    """An untrained 1D FNO ``u (time=input_time) -> u (time=-1)`` on trajectories ``u (sample, time, x)``; without
    ``input_time`` one on states ``u (sample, x)``; ``source_dims``: the dim names of the file it was imported from."""
    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=1, modes=4, width=8, n_layers=2)
    metadata = CheckpointMetadata(
        kind="operator", model=ClassSpec.from_dict(net.init_config(), "model"), package_version=__version__,
        data_schema={
            "kind": "trajectory", "inputs": ["u"], "targets": ["u"], "spatial_dims": ["x"], "spatial_shape": [N],
            "variables": {"u": ["sample", "x"] if input_time is None else ["sample", "time", "x"]},
            "input_time": input_time, "target_time": None if input_time is None else -1,
            "coords": {"x": {"size": N, "units": "1", "min": 0.0, "max": 1.0, "boundary": "bounded"}},
            **({"source_dims": source_dims} if source_dims else {}),
        },
    )
    model = NormalizedOperator(net, Normalizer.from_stats([0.5], [2.0]), Normalizer.from_stats([0.1], [0.5]))
    return write_checkpoint(path, metadata, model.state_dict())


def _trajectories(n_times: int = T, time_dim: str = "time") -> xr.Dataset:
    u = np.random.default_rng(0).normal(size=(3, n_times, N)).astype(np.float32)
    return xr.Dataset({"u": (("sample", time_dim, "x"), u)}, coords={"x": np.linspace(0, 1, N), time_dim: np.arange(n_times) * 0.1})


@pytest.fixture
def served(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    _checkpoint(models / "m.ckpt")
    _checkpoint(models / "no-time.ckpt", input_time=None)
    with folder_client(models) as client:
        yield Surrogate.load(models / "m.ckpt"), client


def _post(client, model: str, ds: xr.Dataset, steps: str = ""):
    return client.post(f"/v1/models/{model}/predict{steps}", content=bytes(ds.to_netcdf()), headers=NETCDF)


def test_one_trajectory_body_gives_the_same_answer_in_python_and_http(served):
    surrogate, client = served
    body = _trajectories()
    expected = surrogate.predict(body)["u"]
    one_state = surrogate.predict(body.isel(time=INPUT_TIME))["u"]  # the state at input_time, sent alone
    np.testing.assert_array_equal(expected.values, one_state.values)
    assert expected.dims == ("sample", "x")
    response = _post(client, "m", body)
    assert response.status_code == 200, response.text
    answer = xr.open_dataset(io.BytesIO(response.content)).load()
    np.testing.assert_allclose(answer["u"].values, expected.values, rtol=1e-6, atol=1e-6)
    assert answer["u"].dims == ("sample", "x") and "time" not in answer.coords  # one state: the time coordinate is not answered
    one = _post(client, "m", body.isel(time=INPUT_TIME, drop=True))  # the one-state body still works
    assert one.status_code == 200, one.text
    np.testing.assert_array_equal(xr.open_dataset(io.BytesIO(one.content))["u"].values, answer["u"].values)


def test_too_short_a_trajectory_is_refused_alike(served):
    surrogate, client = served
    body = _trajectories(n_times=INPUT_TIME)
    with pytest.raises(InputError, match="has 2 state.*input_time=2") as error:
        surrogate.predict(body)
    response = _post(client, "m", body)
    assert response.status_code == 422 and response.json()["code"] == error.value.code == "too_few_times", response.text
    assert response.json()["detail"] == str(error.value)


def test_a_model_without_input_time_refuses_a_time_dim(served, tmp_path):
    _, client = served
    with pytest.raises(InputError, match="trained on no time index"):
        Surrogate.load(_checkpoint(tmp_path / "t.ckpt", input_time=None)).predict(_trajectories())
    response = _post(client, "no-time", _trajectories())
    assert response.status_code == 422 and response.json()["code"] == "wrong_dims", response.text


def test_a_trajectory_with_a_rollout_reads_its_state_at_input_time(served):
    _, client = served
    response = _post(client, "m", _trajectories(), "?steps=2")
    assert response.status_code == 200, response.text
    answer = xr.open_dataset(io.BytesIO(response.content)).load()
    assert answer["u"].dims == ("sample", "time", "x") and answer["u"].shape == (3, 2, N)
    assert answer["time"].values.tolist() == [1, 2]  # rollout steps, not the body's times
