"""One input check: the Python API (numpy, xarray, tensors, rollouts) and the service refuse the same bad
input with the same message, and the service lists the model's data schema from its file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import Surrogate
from surrogates.data.xarray_view import open_split
from surrogates.serve.inputs import InputError
from surrogates.serve.rollout import RolloutSurrogate


@pytest.fixture(scope="module")
def surrogate(models_dir) -> Surrogate:
    return Surrogate.load(models_dir / "fno-darcy.ckpt")


@pytest.fixture(scope="module")
def inputs(darcy_dir) -> np.ndarray:
    ds = open_split(darcy_dir, "test")
    try:
        return ds["a"].values[:3].astype(np.float32)
    finally:
        ds.close()


def _service_detail(client, name: str, arrays: dict) -> tuple[int, str, str]:
    body = {"inputs": {k: np.asarray(v).tolist() for k, v in arrays.items()}}
    # JSON has no NaN: send one through the NetCDF body, which carries float32 exactly
    if any(not np.isfinite(np.asarray(v)).all() for v in arrays.values()):
        data = xr.Dataset({k: (("sample", "x", "y"), np.asarray(v)) for k, v in arrays.items()}).to_netcdf(engine="h5netcdf")
        response = client.post(f"/v1/models/{name}/predict", content=bytes(data), headers={"content-type": "application/x-netcdf"})
    else:
        response = client.post(f"/v1/models/{name}/predict", json=body)
    return response.status_code, response.json()["code"], response.json()["detail"]


def _message(call) -> tuple[str, str]:
    with pytest.raises(InputError) as error:
        call()
    return error.value.code, str(error.value)


def test_nan_input_gets_one_message_from_every_entry_point(client, surrogate, inputs):
    bad = inputs.copy()
    bad[1, 2, 3] = np.nan
    status, code, detail = _service_detail(client, "fno-darcy", {"a": bad})
    assert status == 422 and code == "non_finite"
    expected = "input 'a' contains NaN or infinite values (samples [1]; values beyond float32's range"
    assert detail.startswith(expected)
    ds = xr.Dataset({"a": (("sample", "x", "y"), bad)})
    for call in (
        lambda: surrogate.predict(bad),
        lambda: surrogate.predict(bad[:, None]),
        lambda: surrogate.predict(ds),
        lambda: surrogate.predict_tensor(torch.from_numpy(bad[:, None])),
    ):
        assert _message(call) == (code, detail)


def test_wrong_layouts_are_refused_before_any_prediction(surrogate, inputs):
    code, message = _message(lambda: surrogate.predict_tensor(torch.from_numpy(inputs)))  # no channel axis
    assert code == "wrong_shape" and "expected (n, 1, x, y) with channels [a]" in message
    assert _message(lambda: surrogate.predict(inputs[:, None, None]))[0] == "wrong_shape"
    code, message = _message(lambda: surrogate.predict(xr.Dataset({"b": (("sample", "x", "y"), inputs)})))
    assert code == "missing_input" and "the dataset lacks input variable(s) ['a']; it has ['b']" in message


def test_a_missing_input_reads_the_same_from_the_service_and_from_python(client, surrogate, inputs):
    status, code, detail = _service_detail(client, "fno-darcy", {"b": inputs})
    assert (status, code) == (422, "unknown_input")
    status, code, detail = _service_detail(client, "rollout/fno-heat", {"v": inputs})
    assert status == 422 and code in ("unknown_input", "missing_input")
    python_code, python_detail = _message(lambda: surrogate.predict(xr.Dataset({"b": (("sample", "x", "y"), inputs)})))
    # a Dataset is read as the service reads a NetCDF body: other variables are ignored, the missing input is named
    # with what the dataset holds
    assert python_code == "missing_input"
    assert python_detail == "the dataset lacks input variable(s) ['a']; it has ['b']"


def test_rollout_states_are_checked_as_operator_inputs_are(models_dir):
    rollout = RolloutSurrogate.load(models_dir / "rollout" / "ks-refiner.ckpt")
    states = np.zeros((2, 16), dtype=np.float32)
    states[1, 4] = np.inf
    code, message = _message(lambda: rollout.rollout(states, 2, dt=0.8, dx=0.25))
    assert code == "non_finite" and message.startswith("input 'u' contains NaN or infinite values (samples [1];")
    assert _message(lambda: rollout.rollout_tensor(torch.from_numpy(states), 2))[0] == "wrong_shape"  # no channel axis
    out = rollout.rollout(np.zeros((3, 1, 16), dtype=np.float32), 2, dt=0.8, dx=0.25)
    assert out.shape == (3, 2, 1, 16)


def test_the_service_lists_the_data_schema_with_coordinates_spacing_and_boundary(client, darcy_dir):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    schema = models["fno-darcy"]["data_schema"]
    assert schema["kind"] == "fields" and schema["inputs"] == ["a"] and schema["spatial_shape"] == [16, 16]
    assert schema["source"] == ""  # the training machine's data folder is not shown
    assert schema["variables"]["u"]["long_name"] == "solution (pressure)"
    ds = open_split(darcy_dir, "train")
    try:
        x = ds["x"].values
    finally:
        ds.close()
    eps = float(np.finfo(np.float32).eps)
    assert schema["coords"]["x"]["spacing"] == pytest.approx(float(x[1] - x[0]), rel=8 * eps)
    assert schema["coords"]["x"]["boundary"] == "bounded" and schema["coords"]["x"]["units"] == "1"
    openapi = client.get("/openapi.json").json()
    assert {"DataSchema", "Coordinate", "Variable"} <= set(openapi["components"]["schemas"])
