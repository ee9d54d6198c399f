"""Requests on another domain than the trained one are refused (422 ``wrong_domain`` / ``InputError``) in
``Surrogate.predict`` and the service alike; other resolutions of the same domain, nodes or cell centres, pass."""

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
from surrogates.schema import Coordinate
from surrogates.serve.inputs import InputError, check_domain
from tests.serve.conftest import folder_client

N = 16
NETCDF = {"content-type": "application/x-netcdf"}


def _checkpoint(path: Path, boundary: str = "bounded") -> Path:
    """An untrained 1D FNO ``a -> u`` on x in [0, 1] (bounded: 16 nodes; periodic: 16 points, step 1/16), in km,
    its target in K."""
    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=1, modes=4, width=8, n_layers=2)
    x_max = 1.0 if boundary == "bounded" else 1.0 - 1.0 / N
    metadata = CheckpointMetadata(
        kind="operator", model=ClassSpec.from_dict(net.init_config(), "model"), package_version=__version__,
        data_schema={
            "inputs": ["a"], "targets": ["u"], "spatial_dims": ["x"], "spatial_shape": [N],
            "variables": {"a": ["sample", "x"], "u": ["sample", "x"]},
            "variable_attrs": {"a": {"units": "1", "long_name": "coefficient"}, "u": {"units": "K", "long_name": "temperature"}},
            "coords": {"x": {"size": N, "units": "km", "min": 0.0, "max": x_max, "boundary": boundary}},
        },
    )
    model = NormalizedOperator(net, Normalizer.from_stats([0.5], [2.0]), Normalizer.from_stats([0.1], [0.5]))
    return write_checkpoint(path, metadata, model.state_dict())


def _request(x: np.ndarray, n: int = 2) -> xr.Dataset:
    a = np.random.default_rng(0).normal(size=(n, len(x))).astype(np.float32)
    return xr.Dataset({"a": (("sample", "x"), a)}, coords={"x": x})


def _nodes(n: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    return np.linspace(lo, hi, n)


def _centres(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


@pytest.fixture
def surrogate(tmp_path) -> Surrogate:
    return Surrogate.load(_checkpoint(tmp_path / "m.ckpt"))


@pytest.mark.parametrize("x", [_nodes(N), _nodes(N).astype(np.float32), _nodes(33), _nodes(5), _centres(N), _centres(64)],
                         ids=["trained", "float32", "finer", "coarser", "centres", "finer-centres"])
def test_the_trained_domain_at_any_resolution_is_accepted(surrogate, x):
    out = surrogate.predict(_request(x))
    assert out["u"].shape == (2, len(x))


@pytest.mark.parametrize("x, span", [(_nodes(N, 1.0, 2.0), r"\[1, 2\]"), (_nodes(N, 0.0, 1000.0), r"\[0, 1000\]"),
                                     (_nodes(N, 0.0, 0.5), r"\[0, 0.5\]"), (_nodes(N)[::-1], r"\[1, 0\]")],
                         ids=["shifted", "metres", "half", "reversed"])
def test_another_domain_is_refused_naming_the_dim_and_both_spans(surrogate, x, span):
    with pytest.raises(InputError, match=rf"coordinate 'x' of the request spans {span}; .* trained on 'x' in \[0, 1\] km") as error:
        surrogate.predict(_request(x))
    assert error.value.code == "wrong_domain" and isinstance(error.value, ValueError)
    assert "\n" not in str(error.value)


def test_a_request_without_coordinates_or_a_schema_without_extent_is_not_checked(surrogate):
    a = np.zeros((1, 7), np.float32)
    assert surrogate.predict(xr.Dataset({"a": (("sample", "x"), a)}))["u"].shape == (1, 7)
    check_domain("m", {"x": Coordinate("x", N)}, ["x"], {"x": _nodes(N, 5.0, 9.0)})  # no min / max: skipped


def test_a_non_uniform_grid_is_refused():
    x = np.concatenate([np.linspace(0, 0.5, 12), np.linspace(0.55, 1, 4)])
    with pytest.raises(InputError, match="non-uniform grid"):
        check_domain("m", {"x": Coordinate("x", N, min=0.0, max=1.0)}, ["x"], {"x": x})


def test_periodic_grids_cover_n_steps():
    periodic = {"x": Coordinate("x", N, min=0.0, max=1.0 - 1.0 / N, boundary="periodic")}
    for n in (N, 8, 64):
        check_domain("m", periodic, ["x"], {"x": np.arange(n) / n})  # [0, 1) at any resolution
        check_domain("m", periodic, ["x"], {"x": (np.arange(n) + 0.5) / n})  # cell centres
        check_domain("m", periodic, ["x"], {"x": (np.arange(n) / n).astype(np.float32)})
    with pytest.raises(InputError, match=r"spans \[0, 2\]"):  # a period of 2
        check_domain("m", periodic, ["x"], {"x": np.arange(N) / N * 2})
    with pytest.raises(InputError, match=r"spans \[0.5, 1.5\]"):
        check_domain("m", periodic, ["x"], {"x": 0.5 + np.arange(N) / N})


def test_float32_coordinates_far_from_zero_are_accepted():
    """A fine grid at a large offset, rounded to float32 (steps off by a few ulps), is still the trained grid."""
    x = np.linspace(1000.0, 1001.0, 1001)
    trained = {"x": Coordinate("x", 1001, min=1000.0, max=1001.0)}
    check_domain("m", trained, ["x"], {"x": x.astype(np.float32)})
    # the allowance: one step (1e-3) plus 2 x 4 float32 eps of the largest value (2 x 4.8e-4), under 2 steps;
    # 2.5 steps off is another grid
    for shift in (0.01, 0.0025):
        with pytest.raises(InputError, match=rf"spans \[{1000 + shift:.6g}, {1001 + shift:.6g}\]") as error:
            check_domain("m", trained, ["x"], {"x": (x + shift).astype(np.float32)})
        assert error.value.code == "wrong_domain"


def test_the_ends_may_be_off_by_one_step_and_no_more():
    """The documented allowance: each end within one grid step (the larger of the request's and the trained one)
    of the trained end; in float64 near 0..1 the roundoff allowance (8 float32 eps ~ 1e-6) is far below 1% of a
    step, so 0.99 of a step passes and 1.01 of one is refused."""
    h = 1.0 / (N - 1)
    trained = {"x": Coordinate("x", N, min=0.0, max=1.0)}
    for x in (_nodes(N), _nodes(4 * N)):  # the trained step is the larger one for the finer request too
        check_domain("m", trained, ["x"], {"x": x + 0.99 * h})
        check_domain("m", trained, ["x"], {"x": x - 0.99 * h})
        for shift in (1.01 * h, -1.01 * h):
            with pytest.raises(InputError, match=r"coordinate 'x' of the request spans \[") as error:
                check_domain("m", trained, ["x"], {"x": x + shift})
            assert error.value.code == "wrong_domain"
    coarse = _nodes(4)  # its own step (1/3) is the larger one: a third less 1% passes
    check_domain("m", trained, ["x"], {"x": coarse + 0.99 / 3})
    with pytest.raises(InputError, match="spans"):
        check_domain("m", trained, ["x"], {"x": coarse + 1.01 / 3})


@pytest.mark.parametrize("boundary", ["bounded", "periodic"])
def test_the_service_refuses_another_domain_with_422_wrong_domain(tmp_path, boundary):
    models = tmp_path / "models"
    models.mkdir()
    _checkpoint(models / "m.ckpt", boundary)
    x = _nodes(N) if boundary == "bounded" else np.arange(N) / N
    with folder_client(models) as client:
        for good in (x, x.astype(np.float32), _centres(32)):
            response = client.post("/v1/models/m/predict", content=bytes(_request(good).to_netcdf()), headers=NETCDF)
            assert response.status_code == 200, response.text
        for bad in (x + 1.0, x * 1000.0):
            response = client.post("/v1/models/m/predict", content=bytes(_request(bad).to_netcdf()), headers=NETCDF)
            assert response.status_code == 422 and response.json()["code"] == "wrong_domain", response.text
            assert "coordinate 'x' of the request spans" in response.json()["detail"]
        # JSON bodies carry no coordinates: the trained grid is assumed
        response = client.post("/v1/models/m/predict", json={"inputs": {"a": [0.0] * 8}})
        assert response.status_code == 200, response.text


def test_predictions_carry_the_trained_units_in_python_and_http(tmp_path):
    """``u`` was trained in K: the xarray answer, the NetCDF answer and the JSON answer say so."""
    models = tmp_path / "models"
    models.mkdir()
    surrogate = Surrogate.load(_checkpoint(models / "m.ckpt"))
    request = _request(_nodes(N))
    assert surrogate.predict(request)["u"].attrs == {"long_name": "predicted u", "units": "K"}
    with folder_client(models) as client:
        response = client.post("/v1/models/m/predict", content=bytes(request.to_netcdf()), headers=NETCDF)
        assert response.status_code == 200, response.text
        answer = xr.open_dataset(io.BytesIO(response.content)).load()
        assert answer["u"].attrs["units"] == "K" and answer["u"].attrs["long_name"] == "predicted u"
        body = client.post("/v1/models/m/predict", json={"inputs": {"a": [0.0] * N}}).json()
        assert body["attrs"] == {"u": {"long_name": "predicted u", "units": "K"}} and body["dims"] == {"u": ["x"]}
