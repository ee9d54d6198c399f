"""Values that are not real numbers are refused by every entry point, with the variable named: JSON booleans mixed
with numbers, complex, string and object arrays in the Python API, non-finite conditioning parameters; JSON
integers beyond 64 bits read as the numbers they are; seeds beyond 64 bits are refused by the request's schema."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch

from surrogates import Surrogate
from surrogates.models.fno import FNO
from surrogates.serve.app import ServeSettings, create_app
from surrogates.serve.codecs import ITEMWISE_VALUES, json_array
from surrogates.serve.errors import ServiceError
from surrogates.serve.inputs import InputError
from surrogates.serve.registry import ModelEntry, Registry, Variable
from surrogates.serve.rollout import RolloutSurrogate

from .conftest import LiveServer, save_constructed_checkpoint, save_rollout_checkpoint


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    registry = Registry()
    registry.add(ModelEntry(name="op", kind="surrogate", source="op.ckpt", inputs=[Variable("a", ("x", "y"))],
                            outputs=[Variable("u", ("x", "y"))], spatial_dims=["x", "y"], batchable=True,
                            runner=lambda x: ({"u": x[:, 0].copy()}, {})))
    with LiveServer(create_app(registry, ServeSettings())) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _post(client: httpx.Client, body: bytes, query: str = "") -> httpx.Response:
    return client.post(f"/v1/models/op/predict{query}", content=body, headers={"content-type": "application/json"})


# -- JSON ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("array", ["[[1.5, true], [false, 2.0]]", "[[1, true], [0, 0]]", "[[true, 0], [0, 0]]", "[[true, false]]"])
def test_json_booleans_anywhere_in_an_array_are_refused(client, array):
    response = _post(client, b'{"inputs": {"a": %s}}' % array.encode())
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": "input 'a' must hold only numbers; it holds booleans", "code": "invalid_array"}


def test_booleans_are_found_in_arrays_converted_item_by_item():
    samples = ITEMWISE_VALUES // (16 * 16) + 1
    value = np.zeros((samples, 16, 16)).tolist()
    value[-1][15][15] = True
    with pytest.raises(ServiceError, match="it holds booleans"):
        json_array("a", value)
    assert json_array("a", [[1.0, 2.0]], booleans=False).tolist() == [[1.0, 2.0]]  # the body had no true or false


def test_json_integers_beyond_64_bits_are_numbers(client):
    big = _post(client, b'{"inputs": {"a": [[1000000000000000000000000000000000000000, 0], [0, 0]]}}')
    assert big.status_code == 422 and big.json()["code"] == "non_finite"  # 1e39, beyond float32: as 1e39 is
    assert "float32's range" in big.json()["detail"]
    fits = _post(client, b'{"inputs": {"a": [[1180591620717411303424, 0], [0, 0]]}}')  # 2**70 fits float32
    assert fits.status_code == 200 and np.float32(fits.json()["outputs"]["u"][0][0]) == np.float32(2.0**70)
    with pytest.raises(ServiceError) as refused:
        json_array("a", [[10**400, 0]])
    assert refused.value.code == "non_finite" and "'a'" in refused.value.message


@pytest.mark.parametrize("where", ["body", "query"])
def test_seeds_beyond_64_bits_are_refused_by_the_request_schema(client, where):
    def post(seed: int) -> httpx.Response:
        if where == "body":
            return _post(client, b'{"inputs": {"a": [[1.0]]}, "seed": %d}' % seed)
        return _post(client, b'{"inputs": {"a": [[1.0]]}}', f"?seed={seed}")

    refused = post(2**64)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_request", refused.text
    assert "seed" in refused.json()["detail"] and str(2**64 - 1) in refused.json()["detail"]
    assert post(2**64 - 1).json()["code"] == "seed_not_supported"  # valid; this model takes none


# -- the Python API -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def surrogate(tmp_path_factory) -> Surrogate:
    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=2, modes=2, width=4, projection_channels=4)
    return Surrogate.load(save_constructed_checkpoint(tmp_path_factory.mktemp("op") / "op.ckpt", net, ["a"], ["u"], [8, 8]))


@pytest.fixture(scope="module")
def rollout(tmp_path_factory) -> RolloutSurrogate:
    return RolloutSurrogate.load(save_rollout_checkpoint(tmp_path_factory.mktemp("ks") / "ks.ckpt", 0))


def _refusal(call) -> tuple[str, str]:
    with pytest.raises(InputError) as error:
        call()
    return error.value.code, str(error.value)


@pytest.mark.parametrize("dtype", [np.complex128, np.str_, object, np.bool_])
def test_predict_refuses_values_that_are_not_real_numbers(surrogate, dtype):
    a = np.random.default_rng(0).random((2, 8, 8)).astype(dtype)
    code, message = _refusal(lambda: surrogate.predict(a))
    assert code == "invalid_array" and message.startswith("input 'a' has dtype") and "real numbers" in message
    assert _refusal(lambda: surrogate.predict_tensor(torch.ones(2, 1, 8, 8, dtype=torch.complex64)))[0] == "invalid_array"


def test_rollout_refuses_complex_states_and_checks_its_parameters_as_the_service_does(rollout):
    u0 = np.sin(np.linspace(0, 6, 16)).astype(np.float32)[None]
    code, message = _refusal(lambda: rollout.rollout(u0 + 3j, 2, dt=0.8, dx=0.25))
    assert code == "invalid_array" and message.startswith("input 'u' has dtype complex")
    for dt, samples in ((float("nan"), "[0]"), (1e39, "[0]"), ([0.8, float("inf")], "[1]")):
        states = np.repeat(u0, 2, axis=0)
        code, message = _refusal(lambda: rollout.rollout(states, 2, dt=dt, dx=0.25))
        assert code == "non_finite" and message.startswith(f"input 'dt' contains NaN or infinite values (samples {samples}")
    code, message = _refusal(lambda: rollout.rollout(u0, 2, dt="abc", dx=0.25))
    assert code == "invalid_array" and message.startswith("parameter 'dt' has dtype")
    assert np.isfinite(rollout.rollout(u0, 2, dt=0.8, dx=np.float64(0.25))).all()


def test_values_beyond_float32_count_as_infinite_in_float64_arrays(surrogate):
    a = np.zeros((2, 8, 8))
    a[1, 0, 0] = 1e39  # finite in float64, infinite as the model's float32
    code, message = _refusal(lambda: surrogate.predict(a))
    assert code == "non_finite" and "samples [1]" in message
