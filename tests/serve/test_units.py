"""Inputs declaring other units than the trained ones are refused (``InputError`` / 422 ``wrong_units``) in
``Surrogate.predict``, ``RolloutSurrogate.rollout`` and the service alike; the same units, another spelling of
dimensionless, or no ``units`` attribute at all pass (nothing is converted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import Surrogate, __version__
from surrogates.checkpoint import METADATA_KEY, CheckpointMetadata, ClassSpec, write_checkpoint
from surrogates.models.fno import FNO
from surrogates.models.normalized import NormalizedOperator
from surrogates.nn.normalization import Normalizer
from surrogates.schema import DataSchema
from surrogates.serve.inputs import InputError, check_units
from tests.serve.conftest import folder_client
from tests.serve.test_rollout_domain import PARAMS
from tests.serve.test_rollout_domain import _checkpoint as _rollout_checkpoint
from tests.serve.test_window_layout import COMPONENTS, _trajectories, _windowed_checkpoint

N = 16
NETCDF = {"content-type": "application/x-netcdf"}


def _checkpoint(path: Path, a_units: str = "Pa") -> Path:
    """An untrained 1D FNO ``a -> u`` with ``a`` in ``a_units`` on x in [0, 1] m."""
    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=1, modes=4, width=8, n_layers=2)
    metadata = CheckpointMetadata(
        kind="operator", model=ClassSpec.from_dict(net.init_config(), "model"), package_version=__version__,
        data_schema={
            "inputs": ["a"], "targets": ["u"], "spatial_dims": ["x"], "spatial_shape": [N],
            "variables": {"a": ["sample", "x"], "u": ["sample", "x"]},
            "variable_attrs": {"a": {"units": a_units}, "u": {"units": "K"}},
            "coords": {"x": {"size": N, "units": "m", "min": 0.0, "max": 1.0}},
        },
    )
    model = NormalizedOperator(net, Normalizer.from_stats([0.5], [2.0]), Normalizer.from_stats([0.1], [0.5]))
    return write_checkpoint(path, metadata, model.state_dict())


def _request(a_units: str | None = None, x_units: str | None = None) -> xr.Dataset:
    a = np.random.default_rng(0).normal(size=(2, N)).astype(np.float32)
    x = ("x", np.linspace(0.0, 1.0, N), {} if x_units is None else {"units": x_units})
    return xr.Dataset({"a": (("sample", "x"), a, {} if a_units is None else {"units": a_units})}, coords={"x": x})


def _with_units(path: Path, variables: dict[str, str], coords: dict[str, dict] | None = None) -> Path:
    """The checkpoint at ``path`` with ``variables`` (name -> units) and ``coords`` recorded in its schema."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    schema = checkpoint[METADATA_KEY]["data_schema"]
    schema.setdefault("variables", {}).update({name: schema["variables"].get(name, ["sample", "x"]) for name in variables})
    schema["variable_attrs"] = {name: {"units": units} for name, units in variables.items()}
    schema.setdefault("coords", {}).update(coords or {})
    torch.save(checkpoint, path)
    return path


def _refused_422(response, *parts: str) -> None:
    assert response.status_code == 422 and response.json()["code"] == "wrong_units", response.text
    detail = response.json()["detail"]
    assert "\n" not in detail and all(part in detail for part in parts), detail


def test_kpa_for_a_model_trained_in_pa_is_refused_naming_both_units(tmp_path):
    surrogate = Surrogate.load(_checkpoint(tmp_path / "m.ckpt"))
    with pytest.raises(InputError, match=r"variable 'a' of the request is in units 'kPa'; .* trained on 'a' in 'Pa'") as error:
        surrogate.predict(_request("kPa"))
    assert error.value.code == "wrong_units" and isinstance(error.value, ValueError) and "\n" not in str(error.value)
    with pytest.raises(InputError, match=r"coordinate 'x' of the request is in units 'km'; .* in 'm'"):
        surrogate.predict(_request("Pa", x_units="km"))


@pytest.mark.parametrize("a_units, x_units", [("Pa", "m"), (" Pa ", None), (None, "m"), (None, None)],
                         ids=["same", "spaces", "coordinate-only", "none"])
def test_the_same_units_or_none_are_accepted(tmp_path, a_units, x_units):
    surrogate = Surrogate.load(_checkpoint(tmp_path / "m.ckpt"))
    out = surrogate.predict(_request(a_units, x_units))
    assert out["u"].shape == (2, N) and out["u"].attrs["units"] == "K"


@pytest.mark.parametrize("given", ["1", "", "dimensionless", "-", " 1 "])
@pytest.mark.parametrize("trained", ["1", "dimensionless", "-"])
def test_spellings_of_dimensionless_are_equal(given, trained):
    schema = DataSchema.from_dict({"inputs": ["a"], "variables": {"a": ["sample", "x"]},
                                   "variable_attrs": {"a": {"units": trained}}})
    check_units("m", schema, {"a": given})
    # a trained "1" is also what a file without units records: declared units are taken against it
    check_units("m", schema, {"a": "Pa"})
    pa = DataSchema.from_dict({"inputs": ["a"], "variables": {"a": ["sample", "x"]},
                               "variable_attrs": {"a": {"units": "Pa"}}})
    with pytest.raises(InputError, match="'Pa'"):
        check_units("m", pa, {"a": given})


def test_a_dimensionless_model_takes_any_spelling_in_python(tmp_path):
    surrogate = Surrogate.load(_checkpoint(tmp_path / "m.ckpt", a_units="1"))
    for units in ("1", "", "dimensionless", "-"):
        assert surrogate.predict(_request(units))["u"].shape == (2, N)


def test_the_service_refuses_other_units_with_422_wrong_units(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    _checkpoint(models / "m.ckpt")
    with folder_client(models) as client:
        post = lambda ds: client.post("/v1/models/m/predict", content=bytes(ds.to_netcdf()), headers=NETCDF)  # noqa: E731
        _refused_422(post(_request("kPa")), "variable 'a'", "'kPa'", "'Pa'", "not converted")
        _refused_422(post(_request("Pa", x_units="km")), "coordinate 'x'", "'km'", "'m'")
        for a_units, x_units in [("Pa", "m"), (" Pa", None), (None, None)]:
            response = post(_request(a_units, x_units))
            assert response.status_code == 200, response.text
        # JSON bodies carry no units: accepted as before
        assert client.post("/v1/models/m/predict", json={"inputs": {"a": [0.0] * N}}).status_code == 200


def _windowed(path: Path) -> Path:
    """A windowed model of the vector field ``v`` in m s-1, on x in m and time in s."""
    _windowed_checkpoint(path, ["v_x", "v_y"], COMPONENTS)
    names = [f"v_{c}_t{k}" for c in "xy" for k in range(4)]
    coords = {"time": {"size": 5, "units": "s"}, "x": {"size": N, "units": "m"}}
    return _with_units(path, {name: "m s-1" for name in names}, coords)


def _window_request(v_units: str | None = "m s-1", time_units: str | None = "s") -> xr.Dataset:
    time = ("time", [0.0, 0.1, 0.2, 0.3, 0.4], {} if time_units is None else {"units": time_units})
    v = (("sample", "time", "x", "component"), _trajectories(), {} if v_units is None else {"units": v_units})
    return xr.Dataset({"v": v}, coords={"time": time, "component": ["x", "y"]})


def test_a_windowed_model_refuses_times_in_other_units_and_fields_sent_whole_in_other_units(tmp_path):
    surrogate = Surrogate.load(_windowed(tmp_path / "w.ckpt"))
    assert surrogate.predict(_window_request())["v"].attrs["units"] == "m s-1"
    assert surrogate.predict(_window_request(None, None))["v"].dims == ("sample", "time", "x", "component")
    with pytest.raises(InputError, match=r"coordinate 'time' of the request is in units 'h'; .* in 's'") as error:
        surrogate.predict(_window_request(time_units="h"))
    assert error.value.code == "wrong_units"
    with pytest.raises(InputError, match=r"variable 'v' of the request is in units 'km h-1'; .* in 'm s-1'"):
        surrogate.predict(_window_request(v_units="km h-1"))


def test_the_service_refuses_a_windowed_body_with_times_in_other_units(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    _windowed(models / "w.ckpt")
    with folder_client(models) as client:
        post = lambda ds: client.post("/v1/models/w/predict", content=bytes(ds.to_netcdf(engine="h5netcdf")), headers=NETCDF)  # noqa: E731
        assert post(_window_request()).status_code == 200
        assert post(_window_request(None, None)).status_code == 200
        _refused_422(post(_window_request(time_units="h")), "coordinate 'time'", "'h'", "'s'")
        _refused_422(post(_window_request(v_units="km h-1")), "variable 'v'", "'km h-1'", "'m s-1'")


def test_rollouts_refuse_states_in_other_units(tmp_path):
    from surrogates.serve.rollout import RolloutSurrogate

    models = tmp_path / "models"
    models.mkdir()
    path = _with_units(_rollout_checkpoint(models / "r.ckpt"), {"u": "m s-1"})
    surrogate = RolloutSurrogate.load(path)
    x = np.arange(N) / N

    def states(u_units: str | None, x_units: str | None = None, name: str | None = "u") -> xr.DataArray:
        u = np.random.default_rng(0).normal(size=(2, N)).astype(np.float32)
        attrs = {} if u_units is None else {"units": u_units}
        return xr.DataArray(u, dims=("sample", "x"), name=name, attrs=attrs,
                            coords={"x": ("x", x, {} if x_units is None else {"units": x_units})})

    for good in (states("m s-1", "m"), states(None), states("m s-1", name=None)):
        assert surrogate.rollout(good, 2, **PARAMS).shape == (2, 2, N)
    for bad in (states("cm s-1"), states("cm s-1").to_dataset(), states("cm s-1", name=None)):
        with pytest.raises(InputError, match=r"variable 'u' of the request is in units 'cm s-1'; .* in 'm s-1'") as error:
            surrogate.rollout(bad, 2, **PARAMS)
        assert error.value.code == "wrong_units"
    with pytest.raises(InputError, match=r"coordinate 'x' of the request is in units 'cm'"):
        surrogate.rollout(states(None, "cm"), 2, **PARAMS)

    def body(u_units: str | None) -> bytes:
        ds = states(u_units).to_dataset().assign(dt=("sample", [0.8, 0.8]), dx=("sample", [0.25, 0.25]))
        return bytes(ds.to_netcdf())

    with folder_client(models) as client:
        assert client.post("/v1/models/r/predict?steps=2", content=body("m s-1"), headers=NETCDF).status_code == 200
        _refused_422(client.post("/v1/models/r/predict?steps=2", content=body("cm s-1"), headers=NETCDF), "variable 'u'", "'cm s-1'")
