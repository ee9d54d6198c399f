"""One-step models (PDE-Refiner, MSE U-Net) behind the predict endpoint: rollouts, seeds, conditioning."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import xarray as xr

from surrogates.serve.rollout import RolloutSurrogate

from .conftest import _serve, save_rollout_checkpoint

N = 32  # grid points
PARAMS = {"dt": 0.8, "dx": 0.25}


@pytest.fixture(scope="module")
def rollout_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rollout_models")
    save_rollout_checkpoint(root / "ks" / "refiner.ckpt", 2)
    save_rollout_checkpoint(root / "ks" / "baseline.ckpt", 0)
    return root


@pytest.fixture(scope="module")
def client(rollout_dir) -> Iterator[httpx.Client]:
    from surrogates.serve.registry import Registry

    for server in _serve(Registry.from_folder(rollout_dir), micro_batching=True, max_steps=40):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            yield c


@pytest.fixture(scope="module")
def u0() -> np.ndarray:
    x = np.linspace(0, 2 * np.pi, N, endpoint=False)
    return np.stack([np.sin(x), np.cos(2 * x)]).astype(np.float32)  # two trajectories


def predict(client: httpx.Client, name: str, inputs: dict, **extra) -> httpx.Response:
    body = {"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}, **extra}
    return client.post(f"/v1/models/{name}/predict", json=body)


def answer(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["outputs"]["u"], dtype=np.float32)


def test_rollout_checkpoints_are_listed_with_their_conditioning(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    refiner, baseline = models["ks/refiner"], models["ks/baseline"]
    for info in (refiner, baseline):
        assert info["status"] == "ready" and info["rollout"] is True and info["pde"] == "ks"
        assert [(v["name"], v["dims"]) for v in info["inputs"]] == [("u", ["x"]), ("dt", []), ("dx", [])]
        assert [(v["name"], v["dims"]) for v in info["outputs"]] == [("u", ["x"])]
    assert refiner["stochastic"] is True and baseline["stochastic"] is False
    assert "K=2" in refiner["description"] and "3 network evaluation" in refiner["description"]


@pytest.mark.parametrize("name", ["ks/refiner", "ks/baseline"])
def test_rollout_equals_rollout_surrogate_bit_for_bit(client, rollout_dir, u0, name):
    surrogate = RolloutSurrogate.load(rollout_dir / f"{name}.ckpt")
    seed = 3 if surrogate.stochastic else 0
    extra = {"seed": seed} if surrogate.stochastic else {}
    expected = surrogate.rollout(u0, 5, seed=seed, **PARAMS)  # (2, 5, N)
    response = predict(client, name, {"u": u0, **PARAMS}, steps=5, **extra)
    got = answer(response)
    assert response.json()["dims"] == {"u": ["sample", "time", "x"]}
    assert got.shape == (2, 5, N) and np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    one_step = answer(predict(client, name, {"u": u0, **PARAMS}, **extra))  # no steps: the next state, no time axis
    assert one_step.shape == (2, N) and np.array_equal(one_step, expected[:, 0])


def test_per_trajectory_parameters_and_the_netcdf_form(client, rollout_dir, u0):
    surrogate = RolloutSurrogate.load(rollout_dir / "ks" / "baseline.ckpt")
    dt = np.array([0.75, 0.85], dtype=np.float32)
    expected = surrogate.rollout(u0, 3, dt=dt, dx=0.25)
    got = answer(predict(client, "ks/baseline", {"u": u0, "dt": dt, "dx": [0.25, 0.25]}, steps=3))
    np.testing.assert_array_equal(got, expected)
    body = xr.Dataset({"u": (("sample", "x"), u0), "dt": ("sample", dt), "dx": ("sample", np.full(2, 0.25, np.float32))})
    response = client.post(
        "/v1/models/ks/baseline/predict?steps=3", content=bytes(body.to_netcdf(engine="h5netcdf")),
        headers={"content-type": "application/x-netcdf"},
    )
    assert response.status_code == 200, response.text
    out = xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf").load()
    assert out["u"].dims == ("sample", "time", "x")
    np.testing.assert_array_equal(out["u"].values, expected)


def test_seeds_change_the_refiner_and_only_the_refiner(client, u0):
    runs = [answer(predict(client, "ks/refiner", {"u": u0, **PARAMS}, steps=4, seed=s)) for s in (0, 0, 1)]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
    refused = predict(client, "ks/baseline", {"u": u0, **PARAMS}, steps=2, seed=1)
    assert refused.status_code == 422 and "deterministic" in refused.json()["detail"]


@pytest.mark.parametrize(
    "inputs, extra, words",
    [
        ({"u": "u0", "dt": 0.8}, {}, ["needs input", "dx"]),
        ({"u": "u0", **PARAMS, "nu": 1.0}, {}, ["has no input", "nu"]),
        ({"u": "u0", "dt": float("nan"), "dx": 0.25}, {}, ["NaN", "dt"]),
        ({"u": "u0", **PARAMS}, {"steps": 41}, ["max_steps"]),
        ({"u": "u0", "dt": [0.8, 0.8, 0.8], "dx": 0.25}, {}, ["disagree", "samples"]),
    ],
)
def test_bad_rollout_requests_name_the_problem(client, u0, inputs, extra, words):
    inputs = {k: (u0 if v == "u0" else v) for k, v in inputs.items()}
    body = {"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}, **extra}
    content = json.dumps(body).encode()  # allows NaN (JavaScript's token, which the service reads)
    response = client.post("/v1/models/ks/refiner/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert all(w in response.json()["detail"] for w in words), response.json()["detail"]


def test_surrogate_load_points_rollout_checkpoints_to_rollout_surrogate(rollout_dir):
    from surrogates import Surrogate
    from surrogates.serve.surrogate import CheckpointError

    with pytest.raises(CheckpointError, match="RolloutSurrogate.load"):
        Surrogate.load(rollout_dir / "ks" / "refiner.ckpt")
