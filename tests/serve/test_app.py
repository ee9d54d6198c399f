"""The HTTP service end to end: a real uvicorn server on a loopback port, driven with httpx."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pytest
import xarray as xr

from surrogates import Surrogate
from surrogates.data.xarray_view import open_split
from surrogates.pdes.darcy import Darcy
from surrogates.solvers.reduced_basis import ReducedModel


@pytest.fixture(scope="module")
def darcy_inputs(darcy_dir) -> np.ndarray:
    return open_split(darcy_dir, "test")["a"].values.astype(np.float32)


@pytest.fixture(scope="module")
def surrogate(models_dir) -> Surrogate:
    return Surrogate.load(models_dir / "fno-darcy.ckpt")


def post_json(client: httpx.Client, name: str, inputs: dict, **extra) -> httpx.Response:
    return client.post(f"/v1/models/{name}/predict", json={"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}, **extra})


def output(response: httpx.Response, name: str = "u") -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["outputs"][name], dtype=np.float32)


def assert_bitwise_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype == np.float32
    assert np.array_equal(actual.view(np.uint32), expected.view(np.uint32))


# -- registry endpoints ---------------------------------------------------------------------------------
def test_health_lists_ready_models_and_broken_files(client):
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert set(health["ready"]) == {"fno-darcy", "fixed/fno-darcy", "rollout/fno-heat", "rollout/ks-refiner", "rb/thermal", "darcy-pcg"}
    assert set(health["unavailable"]) == {"corrupt", "foreign"}
    assert "cannot read checkpoint" in health["unavailable"]["corrupt"]
    assert "not a surrogates checkpoint" in health["unavailable"]["foreign"]


def test_models_describe_schema_resolution_and_metrics(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert ".hidden/skipped" not in models and "notes" not in models
    fno = models["fno-darcy"]
    assert (fno["kind"], fno["status"], fno["pde"]) == ("surrogate", "ready", "darcy")
    assert fno["inputs"][0]["name"] == "a" and fno["inputs"][0]["dims"] == ["x", "y"]
    assert fno["outputs"][0]["name"] == "u"
    assert fno["resolution"]["policy"] == "any" and fno["resolution"]["trained"] == [16, 16]
    assert fno["rollout"] is False and fno["batching"] is True
    assert fno["metrics"]["epoch"] >= 1 and "val/rel_l2" in fno["metrics"]["best"]
    assert fno["model"]["name"] == "fno"
    assert models["rollout/fno-heat"]["rollout"] is True
    assert models["fixed/fno-darcy"]["resolution"]["policy"] == "fixed"
    assert models["darcy-pcg"]["kind"] == "solver" and models["darcy-pcg"]["batching"] is False
    assert models["rb/thermal"]["kind"] == "reduced_basis"
    assert models["corrupt"]["status"] == "unavailable" and "cannot read checkpoint" in models["corrupt"]["error"]
    assert client.get("/v1/models/rollout/fno-heat").json() == models["rollout/fno-heat"]
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["detail"]


def test_openapi_schema_describes_both_body_forms(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/v1/models/{name}/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", "application/x-netcdf"}
    assert "PredictRequest" in schema["components"]["schemas"]
    assert "PredictResponse" in schema["components"]["schemas"]
    name = next(p for p in predict["parameters"] if p["name"] == "name")
    assert "fno-darcy" in name["schema"]["enum"] and "corrupt" not in name["schema"]["enum"]
    assert {"400", "404", "413", "422"} <= set(predict["responses"])
    assert client.get("/docs").status_code == 200


# -- predictions ------------------------------------------------------------------------------------------
def test_unbatched_json_predictions_equal_surrogate_predict_bit_for_bit(unbatched_server, surrogate, darcy_inputs):
    with httpx.Client(base_url=unbatched_server.url, timeout=60) as client:
        batch = output(post_json(client, "fno-darcy", {"a": darcy_inputs[:5]}))
        assert_bitwise_equal(batch, surrogate.predict(darcy_inputs[:5]))
        single = post_json(client, "fno-darcy", {"a": darcy_inputs[0]})
        assert single.json()["dims"] == {"u": ["x", "y"]}
        assert_bitwise_equal(output(single), surrogate.predict(darcy_inputs[0]))
        finer = np.kron(darcy_inputs[:2], np.ones((2, 2), dtype=np.float32))  # 32x32: an FNO takes other grids
        assert_bitwise_equal(output(post_json(client, "fno-darcy", {"a": finer})), surrogate.predict(finer))


def test_concurrent_requests_are_micro_batched(server, surrogate, darcy_inputs):
    batcher = server.server.config.app.state.batchers["fno-darcy"]
    calls_before = batcher.stats.calls

    async def run() -> list[np.ndarray]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            responses = await asyncio.gather(
                *[client.post("/v1/models/fno-darcy/predict", json={"inputs": {"a": a.tolist()}}) for a in darcy_inputs]
            )
        return [output(r) for r in responses]

    answers = asyncio.run(run())
    assert batcher.stats.calls - calls_before < len(darcy_inputs)  # some requests shared a call
    assert batcher.stats.largest_batch > 1
    # A batched answer equals Surrogate.predict on the same sample to float32 round-off: which batch
    # a request lands in changes the BLAS kernels (batches of 1-3 vs 4+ samples); see docs/serving.md.
    for a, answer in zip(darcy_inputs, answers):
        np.testing.assert_allclose(answer, surrogate.predict(a), rtol=1e-5, atol=1e-6)


def test_netcdf_in_netcdf_out(client, surrogate, darcy_dir, darcy_inputs):
    ds = open_split(darcy_dir, "test").isel(sample=slice(0, 3))
    for engine, signature in (("h5netcdf", b"\x89HDF"), ("scipy", b"CDF")):
        body = bytes(ds[["a"]].to_netcdf(engine=engine))
        response = client.post("/v1/models/fno-darcy/predict", content=body, headers={"content-type": "application/x-netcdf"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/x-netcdf"
        assert response.content.startswith(signature)
        out = xr.open_dataset(io.BytesIO(response.content), engine=engine).load()
        assert out["u"].dims == ("sample", "x", "y")
        np.testing.assert_array_equal(out["x"].values, ds["x"].values)
        np.testing.assert_allclose(out["u"].values, surrogate.predict(darcy_inputs[:3]), rtol=1e-5, atol=1e-6)
        assert out.attrs["model"] == "fno-darcy"


def test_a_dataset_file_can_be_posted_as_is(unbatched_server, surrogate, darcy_dir, darcy_inputs):
    body = sorted(darcy_dir.glob("test*.h5"))[0].read_bytes()  # holds a and u; the model reads a
    with httpx.Client(base_url=unbatched_server.url, timeout=60) as client:
        response = client.post("/v1/models/fno-darcy/predict", content=body, headers={"content-type": "application/x-netcdf"})
    out = xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf").load()
    assert_bitwise_equal(out["u"].values, surrogate.predict(darcy_inputs))


def test_rollout_feeds_outputs_back(unbatched_server, models_dir):
    heat = Surrogate.load(models_dir / "rollout" / "fno-heat.ckpt")
    u0 = np.random.default_rng(0).normal(size=(2, 12, 12)).astype(np.float32)
    expected, state = [], u0
    for _ in range(3):
        state = heat.predict(state)
        expected.append(state)
    expected = np.stack(expected, axis=1)
    with httpx.Client(base_url=unbatched_server.url, timeout=60) as client:
        response = post_json(client, "rollout/fno-heat", {"u": u0}, steps=3)
        assert response.json()["dims"] == {"u": ["sample", "time", "x", "y"]} and response.json()["steps"] == 3
        assert_bitwise_equal(output(response), expected)
        single = post_json(client, "rollout/fno-heat", {"u": u0[0]}, steps=3)  # one sample: compare with one sample
        state = u0[0]
        for step in range(3):
            state = heat.predict(state)
            assert_bitwise_equal(output(single)[step], state)
        body = bytes(xr.Dataset({"u": (("sample", "x", "y"), u0)}).to_netcdf(engine="h5netcdf"))
        nc = client.post("/v1/models/rollout/fno-heat/predict?steps=3", content=body, headers={"content-type": "application/x-netcdf"})
        out = xr.open_dataset(io.BytesIO(nc.content), engine="h5netcdf").load()
        assert out["u"].dims == ("sample", "time", "x", "y") and list(out["time"].values) == [1, 2, 3]
        assert_bitwise_equal(out["u"].values, expected)


def test_rollout_through_the_batcher(client, models_dir):
    heat = Surrogate.load(models_dir / "rollout" / "fno-heat.ckpt")
    u0 = np.ones((12, 12), dtype=np.float32)
    answer = output(post_json(client, "rollout/fno-heat", {"u": u0}, steps=4))
    assert answer.shape == (4, 12, 12)
    np.testing.assert_allclose(answer[-1], heat.predict(heat.predict(heat.predict(heat.predict(u0)))), rtol=1e-5, atol=1e-6)


def test_solver_answers_the_same_request_as_the_surrogate(client, darcy_inputs):
    request = {"a": darcy_inputs[:2]}
    surrogate_u = output(post_json(client, "fno-darcy", request))
    response = post_json(client, "darcy-pcg", request)
    solver_u = output(response)
    reference, report = Darcy(resolution=16).solve({"a": darcy_inputs[:2].astype(np.float64)})
    np.testing.assert_array_equal(solver_u, reference["u"].astype(np.float32))
    assert solver_u.shape == surrogate_u.shape == (2, 16, 16)
    assert response.json()["info"]["solver"]["iterations"] == report.iterations
    # other square grids build the PDE at that resolution; non-square grids are refused
    assert output(post_json(client, "darcy-pcg", {"a": np.full((12, 12), 3.0)})).shape == (12, 12)
    refused = post_json(client, "darcy-pcg", {"a": np.full((12, 10), 3.0)})
    assert refused.status_code == 422 and refused.json()["code"] == "wrong_resolution"
    assert "square" in refused.json()["detail"]


def test_reduced_basis_model(client, models_dir):
    model = ReducedModel.load(models_dir / "rb" / "thermal.rb.h5")
    mus = np.array([[0.2, 0.5, 0.9, 0.3], [1.0, 0.1, 0.4, 0.7]], dtype=np.float32)
    inputs = {f"mu_{k}": mus[:, k] for k in range(4)}
    response = post_json(client, "rb/thermal", inputs)
    solution = model.solve(mus.astype(np.float64))
    np.testing.assert_array_equal(output(response), model.fields(solution.coefficients).astype(np.float32))
    np.testing.assert_array_equal(output(response, "error_bound"), solution.bound.astype(np.float32))
    assert response.json()["dims"] == {"u": ["sample", "x", "y"], "error_bound": ["sample"]}
    outside = post_json(client, "rb/thermal", {f"mu_{k}": 5.0 for k in range(4)})
    assert outside.status_code == 422, outside.text


# -- errors ------------------------------------------------------------------------------------------------
A16 = np.full((16, 16), 3.0, dtype=np.float32).tolist()
NETCDF = {"content-type": "application/x-netcdf"}


def _truncated_netcdf() -> bytes:
    body = bytes(xr.Dataset({"a": (("x", "y"), np.ones((16, 16), np.float32))}).to_netcdf(engine="h5netcdf"))
    return body[: len(body) // 2]


ERROR_CASES = {
    "unknown model": ("/v1/models/nope/predict", {"json": {"inputs": {"a": A16}}}, 404, "unknown_model", "unknown model 'nope'"),
    "unavailable model": ("/v1/models/corrupt/predict", {"json": {"inputs": {"a": A16}}}, 503, "model_unavailable", "cannot read checkpoint"),
    "wrong shape": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": [1.0, 2.0]}}}, 422, "wrong_shape", "expects (n, x, y)"),
    "too many dims": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": [[A16]]}}}, 422, "wrong_shape", "has shape (1, 1, 16, 16)"),
    "wrong resolution": ("/v1/models/fixed/fno-darcy/predict", {"json": {"inputs": {"a": np.ones((8, 8)).tolist()}}}, 422, "wrong_resolution", "only takes its own grid (16, 16)"),
    "NaN": ("/v1/models/fno-darcy/predict", {"content": b'{"inputs": {"a": [[1.0, NaN], [2.0, 3.0]]}}'}, 422, "non_finite", "input 'a' contains NaN or infinite"),
    "infinity": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": [[1e39, 1.0], [1.0, 1.0]]}}}, 422, "non_finite", "samples [0]"),
    "missing input": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {}}}, 422, "missing_input", "needs input(s) ['a']"),
    "unknown input": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": A16, "b": A16}}}, 422, "unknown_input", "no input(s) ['b']"),
    "ragged": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": [[1.0, 2.0], [3.0]]}}}, 422, "invalid_array", "rectangular"),
    "strings": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": [["1", "2"], ["3", "4"]]}}}, 422, "invalid_array", "only numbers"),
    "no inputs field": ("/v1/models/fno-darcy/predict", {"json": {"a": A16}}, 422, "invalid_request", "inputs"),
    "not an object": ("/v1/models/fno-darcy/predict", {"json": [1, 2]}, 422, "invalid_request", "must be an object"),
    "bad steps": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": A16}, "steps": 0}}, 422, "invalid_request", "steps"),
    "steps without rollout": ("/v1/models/fno-darcy/predict", {"json": {"inputs": {"a": A16}, "steps": 2}}, 422, "steps_not_supported", "cannot roll out"),
    "too many steps": ("/v1/models/rollout/fno-heat/predict", {"json": {"inputs": {"u": A16}, "steps": 51}}, 422, "too_many_steps", "max_steps=50"),
    "malformed JSON": ("/v1/models/fno-darcy/predict", {"content": b'{"inputs": {"a": [[1.0, 2.0]', "headers": {"content-type": "application/json"}}, 400, "malformed_json", "not valid JSON"),
    "empty body": ("/v1/models/fno-darcy/predict", {"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty_body", "no body"),
    "not NetCDF": ("/v1/models/fno-darcy/predict", {"content": b"hello world", "headers": NETCDF}, 400, "malformed_netcdf", "not a NetCDF file"),
    "truncated NetCDF": ("/v1/models/fno-darcy/predict", {"content": _truncated_netcdf(), "headers": NETCDF}, 400, "malformed_netcdf", "cannot read the NetCDF body"),
    "NetCDF without the input": ("/v1/models/fno-darcy/predict", {"content": bytes(xr.Dataset({"b": (("x", "y"), np.ones((4, 4)))}).to_netcdf()), "headers": NETCDF}, 422, "missing_input", "lacks input variable(s) ['a']"),
    "NetCDF with wrong dims": ("/v1/models/fno-darcy/predict", {"content": bytes(xr.Dataset({"a": (("lat", "lon"), np.ones((4, 4)))}).to_netcdf()), "headers": NETCDF}, 422, "wrong_dims", "expected ('sample', 'x', 'y')"),
    "content type": ("/v1/models/fno-darcy/predict", {"content": b"a=1", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type", "text/plain"),
    "body too large (Content-Length)": ("/v1/models/fno-darcy/predict", {"content": b" " * 1_000_001, "headers": {"content-type": "application/json"}}, 413, "body_too_large", "limit is 1000000 bytes"),
    "body too large (streamed)": ("/v1/models/fno-darcy/predict", {"content": "stream", "headers": {"content-type": "application/json"}}, 413, "body_too_large", "exceeds the limit of 1000000 bytes"),
    "too many values": ("/v1/models/fno-darcy/predict", {"content": "huge-netcdf", "headers": NETCDF}, 413, "too_many_values", "max_elements"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_requests_get_a_4xx_naming_the_problem_and_the_service_keeps_serving(client, case):
    path, kwargs, status, code, message = ERROR_CASES[case]
    kwargs = dict(kwargs)
    if kwargs.get("content") == "stream":  # chunked upload: no Content-Length, the size shows while reading
        kwargs["content"] = (b" " * 100_000 for _ in range(11))
    if kwargs.get("content") == "huge-netcdf":  # small on the wire (compressed), too many values once decoded
        big = xr.Dataset({"a": (("sample", "x", "y"), np.zeros((80, 512, 512), np.float32))})
        kwargs["content"] = bytes(big.to_netcdf(engine="h5netcdf", encoding={"a": {"compression": "gzip", "compression_opts": 9}}))
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert message in body["detail"], body["detail"]
    # the service keeps serving
    assert client.get("/health").status_code == 200
    assert output(client.post("/v1/models/fno-darcy/predict", json={"inputs": {"a": A16}})).shape == (16, 16)


def test_get_on_predict_names_the_method(client):
    response = client.get("/v1/models/fno-darcy/predict")
    assert response.status_code == 405 and "POST" in response.json()["detail"]


def test_the_event_loop_stays_free_while_a_model_computes(tmp_path):
    import threading

    from surrogates.serve.app import ServeSettings, create_app
    from surrogates.serve.registry import ModelEntry, Registry, Variable
    from tests.serve.conftest import LiveServer

    computing, release = threading.Event(), threading.Event()

    def slow(x):  # stands for a long inference in the worker thread: it ends only when the test says so
        computing.set()
        release.wait(60)
        return {"u": x[:, 0]}, {}

    entry = ModelEntry(
        name="slow", kind="surrogate", source="test", inputs=[Variable("a", ("x",))], outputs=[Variable("u", ("x",))],
        spatial_dims=["x"], batchable=True, runner=slow,
    )
    with LiveServer(create_app(Registry([entry]), ServeSettings())) as server:

        async def run() -> tuple[int, bool, int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                pending = asyncio.create_task(client.post("/v1/models/slow/predict", json={"inputs": {"a": [1.0, 2.0]}}))
                for _ in range(3000):  # until the model is computing (at most 30 s)
                    if computing.is_set():
                        break
                    await asyncio.sleep(0.01)
                health = await client.get("/health")  # a blocked event loop would not answer before the release
                answered_while_computing = computing.is_set() and not release.is_set()
                release.set()
                return health.status_code, answered_while_computing, (await pending).status_code

        try:
            health, answered_while_computing, status = asyncio.run(run())
        finally:
            release.set()
    assert health == 200 and answered_while_computing
    assert status == 200


class _UnconvergedDarcy(Darcy):
    """Darcy whose PCG "does not converge" (``RuntimeError``, as ``solve_spd`` raises) where ``a`` exceeds 100."""

    def solve(self, inputs):
        if (np.asarray(inputs["a"]) > 100).any():
            raise RuntimeError("PCG (amg) did not converge: relative residual 1e-3 > rtol 1e-10 /secret/path")
        return super().solve(inputs)


def _raising_rollout(x, seed):
    yield {"u": x[:, 0]}, {}
    raise RuntimeError("integrator failed")


def test_a_model_that_raises_answers_a_json_500_and_the_service_keeps_serving():
    from surrogates.serve.app import ServeSettings, create_app
    from surrogates.serve.loaders import solver_entry
    from surrogates.serve.registry import ModelEntry, Registry, Variable
    from tests.serve.conftest import LiveServer

    rolling = ModelEntry(
        name="rolling", kind="surrogate", source="test", inputs=[Variable("u", ("x",))], outputs=[Variable("u", ("x",))],
        spatial_dims=["x"], runner=lambda x: ({"u": x[:, 0]}, {}), rollout_runner=_raising_rollout,
    )
    registry = Registry([solver_entry("pcg", _UnconvergedDarcy(resolution=8)), rolling])
    with LiveServer(create_app(Registry(registry.ready), ServeSettings(request_timeout_s=60))) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(3):  # more failures than one worker thread: each answered, none hangs
                failed = post_json(client, "pcg", {"a": np.full((8, 8), 200.0)})
                assert failed.status_code == 500, failed.text
                assert failed.json()["code"] == "model_failed"
                assert "RuntimeError" in failed.json()["detail"] and "/secret" not in failed.json()["detail"]
            expected, _ = Darcy(resolution=8).solve({"a": np.ones((1, 8, 8))})
            np.testing.assert_array_equal(output(post_json(client, "pcg", {"a": np.ones((1, 8, 8))}))[0], expected["u"][0].astype(np.float32))
            failed = post_json(client, "rolling", {"u": np.ones((1, 4))}, steps=3)  # fails at its second step
            assert failed.status_code == 500 and failed.json()["code"] == "model_failed", failed.text
            assert output(post_json(client, "rolling", {"u": np.ones((1, 4))})).shape == (1, 4)
