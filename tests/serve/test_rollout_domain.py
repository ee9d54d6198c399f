"""Rollout models check the domain of the initial states as operator models do (``check_domain``): an
``xarray`` input to ``RolloutSurrogate.rollout`` and a NetCDF body to the service on another domain are
refused with ``wrong_domain``; other resolutions of the trained domain pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import __version__
from surrogates.checkpoint import CheckpointMetadata, ClassSpec, write_checkpoint
from surrogates.models.normalized import NormalizedStepper
from surrogates.models.pde_refiner import ROLLOUT_KIND, PDERefiner
from surrogates.nn.normalization import Normalizer
from surrogates.serve.inputs import InputError
from surrogates.serve.rollout import RolloutSurrogate
from tests.serve.conftest import folder_client

N = 16
NETCDF = {"content-type": "application/x-netcdf"}
PARAMS = {"dt": 0.8, "dx": 0.25}


def _checkpoint(path: Path, boundary: str = "periodic", source_dims: dict[str, str] | None = None) -> Path:
    """An untrained one-step MSE model (K=0) conditioned on dt and dx, as tests/serve/conftest.py builds it, whose
    schema records x in [0, 1) (periodic, 16 points) or [0, 1] (bounded)."""
    torch.manual_seed(0)
    net = PDERefiner(1, 1, n_params=2, num_refinement_steps=0, hidden_channels=8, channel_multipliers=[1, 2])
    x_max = 1.0 - 1.0 / N if boundary == "periodic" else 1.0
    metadata = CheckpointMetadata(
        kind=ROLLOUT_KIND, model=ClassSpec.from_dict(net.init_config(), "model"), conditioning={"names": ["dt", "dx"]},
        data_schema={
            "kind": "trajectory", "pde": "ks", "state": ["u"], "conditioning": ["dt", "dx"], "spatial_dims": ["x"],
            "coords": {"x": {"size": N, "units": "m", "min": 0.0, "max": x_max, "boundary": boundary}},
            **({"source_dims": source_dims} if source_dims else {}),
        },
        package_version=__version__,
    )
    model = NormalizedStepper(net, Normalizer.from_stats([0.1], [1.5]), torch.tensor([0.8, 0.25]))
    return write_checkpoint(path, metadata, model.state_dict())


def _grid(n: int = N) -> np.ndarray:
    return np.arange(n) / n  # [0, 1) periodic


def _states(x: np.ndarray) -> xr.DataArray:
    u = np.random.default_rng(0).normal(size=(2, len(x))).astype(np.float32)
    return xr.DataArray(u, dims=("sample", "x"), coords={"x": x}, name="u")


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory) -> RolloutSurrogate:
    return RolloutSurrogate.load(_checkpoint(tmp_path_factory.mktemp("rd") / "r.ckpt"))


@pytest.mark.parametrize("x", [_grid(), _grid().astype(np.float32), _grid(32), (np.arange(N) + 0.5) / N],
                         ids=["trained", "float32", "finer", "centres"])
def test_the_trained_domain_at_any_resolution_rolls_out(surrogate, x):
    states = _states(x)
    out = surrogate.rollout(states, 3, **PARAMS)
    assert out.shape == (2, 3, len(x))
    np.testing.assert_array_equal(out, surrogate.rollout(states.values, 3, **PARAMS))  # as the numpy input
    dataset = surrogate.rollout(states.to_dataset(), 3, **PARAMS)  # a Dataset of the state variables: with a state axis
    np.testing.assert_array_equal(dataset[:, :, 0], out)


@pytest.mark.parametrize("x, span", [(_grid() + 1.0, r"\[1, 2\]"), (_grid() * 1000.0, r"\[0, 1000\]")], ids=["shifted", "mm"])
def test_another_domain_is_refused(surrogate, x, span):
    for states in (_states(x), _states(x).to_dataset(), _states(x).transpose("x", "sample")):
        with pytest.raises(InputError, match=rf"coordinate 'x' of the request spans {span}; .* trained on 'x' in \[0, 1\] m") as error:
            surrogate.rollout(states, 2, **PARAMS)
        assert error.value.code == "wrong_domain"


def test_an_xarray_input_without_coordinates_is_not_checked(surrogate):
    states = xr.DataArray(np.zeros((1, 8), np.float32), dims=("sample", "x"))
    assert surrogate.rollout(states, 2, **PARAMS).shape == (1, 2, 8)
    with pytest.raises(InputError, match=r"lacks state variable\(s\) \['u'\]"):
        surrogate.rollout(xr.Dataset({"v": states}), 2, **PARAMS)


def test_states_in_the_source_files_dim_names_are_checked_too(tmp_path):
    """A model trained on imported data (schema.source_dims) takes states in the source's dim names, as
    Surrogate.predict does; their coordinates are checked under the trained names, not skipped, and refused in theirs."""
    surrogate = RolloutSurrogate.load(_checkpoint(tmp_path / "r.ckpt", source_dims={"sample": "run", "x": "lon"}))
    states = _states(_grid()).rename({"sample": "run", "x": "lon"})
    np.testing.assert_array_equal(surrogate.rollout(states.transpose("lon", "run"), 2, **PARAMS),
                                  surrogate.rollout(states.values, 2, **PARAMS))
    shifted = _states(_grid() + 1.0).rename({"sample": "run", "x": "lon"})
    for given in (shifted, shifted.to_dataset()):
        with pytest.raises(InputError, match=r"coordinate 'lon' of the request spans \[1, 2\]") as error:
            surrogate.rollout(given, 2, **PARAMS)
        assert error.value.code == "wrong_domain"
    km = states.assign_coords(lon=states.lon.assign_attrs(units="km"))
    with pytest.raises(InputError) as error:
        surrogate.rollout(km, 2, **PARAMS)
    assert error.value.code == "wrong_units"


@pytest.mark.parametrize("boundary", ["bounded", "periodic"])
def test_the_service_refuses_a_rollout_on_another_domain_with_422_wrong_domain(tmp_path, boundary):
    models = tmp_path / "models"
    models.mkdir()
    _checkpoint(models / "r.ckpt", boundary)
    x = np.linspace(0.0, 1.0, N) if boundary == "bounded" else _grid()

    def body(x: np.ndarray) -> bytes:
        return bytes(_states(x).to_dataset().assign(dt=("sample", [0.8, 0.8]), dx=("sample", [0.25, 0.25])).to_netcdf())

    with folder_client(models) as client:
        for good in (x, x.astype(np.float32), (np.arange(32) + 0.5) / 32):
            response = client.post("/v1/models/r/predict?steps=3", content=body(good), headers=NETCDF)
            assert response.status_code == 200, response.text
        for bad in (x + 1.0, x * 1000.0):
            for steps in ("", "?steps=3"):
                response = client.post(f"/v1/models/r/predict{steps}", content=body(bad), headers=NETCDF)
                assert response.status_code == 422 and response.json()["code"] == "wrong_domain", response.text
                assert "coordinate 'x' of the request spans" in response.json()["detail"]
        # JSON bodies carry no coordinates: the trained grid is assumed
        response = client.post("/v1/models/r/predict", json={"inputs": {"u": [0.0] * 8, **PARAMS}, "steps": 2})
        assert response.status_code == 200, response.text
