"""Pointwise models (PIG, PINN) trained on Helmholtz: `PointwiseSurrogate`, the service, `surrogates-evaluate`."""

from __future__ import annotations

from dataclasses import replace

import functools
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import lightning as L
import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import Surrogate
from surrogates.data.collocation import CollocationDataModule
from surrogates.errors import CheckpointError
from surrogates.models.mlp import MLP
from surrogates.models.pig import PIG
from surrogates.pdes.physics import Helmholtz2D
from surrogates.serve.pointwise import PointwiseSurrogate
from surrogates.serve.rollout import RolloutSurrogate, load_surrogate
from surrogates.tasks.physics_informed import PhysicsInformed, predict_on_points

from .conftest import _serve

BOX = [[-1.0, 1.0], [-1.0, 1.0]]
MAX_ELEMENTS = 1000  # 500 points of (x, y)
NETWORKS = {
    "pig": lambda: PIG(in_channels=2, n_gaussians=30, bounds=BOX, sigma_init=0.1),
    "pinn": lambda: MLP(in_channels=2, width=16, depth=2, bounds=BOX),
}
EVAL_RESOLUTION = {"pig": 11, "pinn": [9, 13]}  # the task's test grid (a non-square one for the PINN)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, dict]:
    """A tiny PIG and a tiny PINN trained for 8 steps on Helmholtz, saved under ``helmholtz/``, with the task's test metrics."""
    root = tmp_path_factory.mktemp("pointwise_models")
    out = {}
    for name, make in NETWORKS.items():
        L.seed_everything(0)
        dm = CollocationDataModule(
            Helmholtz2D(), inputs=["x", "y"], n_collocation=64, n_boundary=8, steps_per_epoch=4,
            eval_resolution=EVAL_RESOLUTION[name],
        )
        task = PhysicsInformed(
            make(), optimizer=functools.partial(torch.optim.Adam, lr=0.02), weights={"residual": 1e-3}, save_figure=False
        )
        trainer = L.Trainer(
            max_steps=8, max_epochs=-1, accelerator="cpu", logger=False, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False, default_root_dir=root / ".runs" / name,
        )
        trainer.fit(task, datamodule=dm)
        path = root / "helmholtz" / f"{name}.ckpt"
        trainer.save_checkpoint(path)  # through the task's on_save_checkpoint, as ModelCheckpoint does
        results = trainer.test(task, datamodule=dm, verbose=False)[0]
        out[name] = {"path": path, "net": task.net.eval(), "test": results, "root": root}
    return out


@pytest.fixture(scope="module")
def models_root(trained) -> Path:
    return trained["pig"]["root"]


@pytest.fixture(scope="module")
def surrogates(trained) -> dict[str, PointwiseSurrogate]:
    return {name: PointwiseSurrogate.load(item["path"]) for name, item in trained.items()}


@pytest.fixture(scope="module")
def registry(models_root):
    from surrogates.serve.registry import Registry

    return Registry.from_folder(models_root)


@pytest.fixture(scope="module")
def client(registry) -> Iterator[httpx.Client]:
    """Each request alone (the bit-for-bit path); a small `max_elements` so that 413 is cheap to provoke."""
    for server in _serve(registry, micro_batching=False, max_elements=MAX_ELEMENTS):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            yield c


@pytest.fixture(scope="module")
def batched_url(registry) -> Iterator[str]:
    for server in _serve(registry, micro_batching=True, max_batch_size=64, max_wait_ms=50.0):
        yield server.url


def points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 2))


def post(client: httpx.Client, name: str, inputs: dict, **extra) -> httpx.Response:
    body = {"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}, **extra}
    return client.post(f"/v1/models/{name}/predict", content=json.dumps(body), headers={"content-type": "application/json"})


def values(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["outputs"]["u"], dtype=np.float32)


# -- PointwiseSurrogate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pig", "pinn"])
def test_pointwise_surrogate_predicts_the_networks_own_values(trained, surrogates, name):
    surrogate, net = surrogates[name], trained[name]["net"]
    assert surrogate.coordinates == ["x", "y"] and surrogate.outputs == ["u"]
    assert surrogate.bounds == [(-1.0, 1.0), (-1.0, 1.0)] and surrogate.domain == {"x": (-1.0, 1.0), "y": (-1.0, 1.0)}
    assert surrogate.problem == Helmholtz2D() and surrogate.pde == "helmholtz"
    assert type(surrogate.net) is type(net) and surrogate.metadata["kind"] == "pointwise"
    xy = points(50)
    expected = predict_on_points(net, torch.as_tensor(xy, dtype=torch.float32)).numpy()
    got = surrogate.predict(xy)
    assert got.shape == (50,) and got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    one = surrogate.predict(xy[3])  # one point (d,); a batch of one rounds like the BLAS kernel of its size
    assert one.shape == () and one == pytest.approx(got[3], rel=1e-5, abs=1e-6)
    assert np.array_equal(surrogate.predict(xy.astype(np.float32)), got)
    surrogate.chunk = 7  # chunks change the values by float32 round-off at most
    try:
        np.testing.assert_allclose(surrogate.predict(xy), got, rtol=1e-5, atol=1e-6)
    finally:
        surrogate.chunk = 16384
    x, y = np.linspace(-1, 1, 4), np.linspace(-1, 1, 6)
    grid = surrogate.predict_grid(x, y)
    mesh = np.stack([m.ravel() for m in np.meshgrid(x, y, indexing="ij")], axis=-1)
    assert grid.shape == (4, 6) and np.array_equal(grid, surrogate.predict(mesh).reshape(4, 6))
    assert "helmholtz" in repr(surrogate) and "x in [-1, 1]" in repr(surrogate)


@pytest.mark.parametrize(
    "bad, words",
    [
        ([[1.5, 0.0]], ["outside the domain", "x in [-1, 1], y in [-1, 1]", "point 0 (x=1.5, y=0)"]),
        ([[0.0, 0.0], [0.2, -1.0001]], ["1 of 2 point(s)", "point 1"]),
        ([[0.0, np.nan]], ["NaN or infinite", "[0]"]),
        ([[0.0, np.inf], [0.0, 0.0]], ["NaN or infinite"]),
        ([[0.0, 0.0, 0.0]], ["(1, 3)", "(P, 2)", "(x, y)"]),
        (np.zeros((2, 2, 2)), ["(2, 2, 2)"]),
        (np.zeros((0, 2)), ["no points"]),
        ([[0.0, "a"]], ["numbers"]),
    ],
)
def test_bad_points_are_refused_with_a_message(surrogates, bad, words):
    with pytest.raises(ValueError) as error:
        surrogates["pig"].predict(bad)
    for word in words:
        assert word in str(error.value)


def test_boundary_points_are_accepted_up_to_round_off(surrogates):
    surrogate = surrogates["pinn"]
    eps = float(np.finfo(np.float32).eps)
    on_boundary = np.array([[-1.0, 1.0], [1.0 + 2 * eps, -1.0 - 2 * eps], [np.float32(1.0) + np.float32(eps), 0.0]])
    assert np.isfinite(surrogate.predict(on_boundary)).all()
    with pytest.raises(ValueError, match="outside the domain"):
        surrogate.predict([[1.0 + 1e-4, 0.0]])


def test_other_loaders_name_the_pointwise_loader(trained):
    path = trained["pig"]["path"]
    with pytest.raises(CheckpointError, match=r"'pointwise' model.*PointwiseSurrogate\.load") as error:
        Surrogate.load(path)
    assert str(path) in str(error.value)
    with pytest.raises(CheckpointError, match=r"PointwiseSurrogate\.load"):
        RolloutSurrogate.load(path)
    assert isinstance(load_surrogate(path), PointwiseSurrogate)


def test_a_checkpoint_without_problem_takes_its_coordinates_and_box_from_the_schema(trained, tmp_path):
    from surrogates.checkpoint import read_checkpoint, write_checkpoint

    checkpoint = read_checkpoint(trained["pinn"]["path"])
    metadata = checkpoint.metadata
    metadata.problem = None
    metadata.data_schema = replace(metadata.data_schema, inputs=("t", "x"), bounds={"t": (0, 1), "x": (-2, 2)})
    path = write_checkpoint(tmp_path / "no_problem.ckpt", metadata, checkpoint.network_state())
    surrogate = PointwiseSurrogate.load(path)
    assert surrogate.problem is None and surrogate.coordinates == ["t", "x"] and surrogate.bounds == [(0.0, 1.0), (-2.0, 2.0)]
    assert surrogate.predict([[0.5, -1.5]]).shape == (1,)
    with pytest.raises(ValueError, match=r"t in \[0, 1\]"):
        surrogate.predict([[-0.5, 0.0]])
    metadata.data_schema = replace(
        metadata.data_schema, inputs=("t", "x", "y"), bounds={"t": (0, 1), "x": (-2, 2), "y": (0, 1)}
    )
    write_checkpoint(tmp_path / "disagreeing.ckpt", metadata, checkpoint.network_state())
    with pytest.raises(CheckpointError, match=r"takes 2 coordinate\(s\) but the file names \['t', 'x', 'y'\]"):
        PointwiseSurrogate.load(tmp_path / "disagreeing.ckpt")


# -- the service --------------------------------------------------------------------------------------
def test_models_lists_pointwise_models_ready_with_their_coordinates_and_domain(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and set(health["ready"]) == {"helmholtz/pig", "helmholtz/pinn"}
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    for name, cls in (("helmholtz/pig", "pig"), ("helmholtz/pinn", "mlp")):
        info = models[name]
        assert (info["kind"], info["status"], info["pde"]) == ("pointwise", "ready", "helmholtz")
        assert [(v["name"], v["dims"]) for v in info["inputs"]] == [("x", []), ("y", [])]
        assert [(v["name"], v["dims"]) for v in info["outputs"]] == [("u", [])]
        assert info["domain"] == {"x": [-1.0, 1.0], "y": [-1.0, 1.0]}
        assert info["spatial_dims"] == [] and info["resolution"]["policy"] == "none"
        assert info["rollout"] is False and info["stochastic"] is False
        assert info["model"]["name"] == cls and info["metrics"]["global_step"] == 8
        assert "x in [-1, 1], y in [-1, 1]" in info["description"]
        assert client.get(f"/v1/models/{name}").json() == info


@pytest.mark.parametrize("name", ["pig", "pinn"])
def test_predict_answers_pointwise_surrogate_predict_bit_for_bit(client, surrogates, name):
    xy = points(40, seed=1)
    expected = surrogates[name].predict(xy)
    response = post(client, f"helmholtz/{name}", {"x": xy[:, 0], "y": xy[:, 1]})
    got = values(response)
    assert response.json()["dims"] == {"u": ["sample"]} and response.json()["shape"] == {"u": [40]}
    assert got.shape == (40,) and np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    one = post(client, f"helmholtz/{name}", {"x": float(xy[5, 0]), "y": float(xy[5, 1])})  # one point: numbers
    assert one.status_code == 200 and one.json()["shape"] == {"u": []}
    assert np.float32(one.json()["outputs"]["u"]) == surrogates[name].predict(xy[5])
    edge = post(client, f"helmholtz/{name}", {"x": [-1.0, 1.0], "y": [1.0, -1.0]})  # corners of the box
    assert np.array_equal(values(edge), surrogates[name].predict([[-1.0, 1.0], [1.0, -1.0]]))


def test_netcdf_query_points(client, surrogates):
    xy = points(12, seed=2).astype(np.float32)
    body = xr.Dataset({"x": ("sample", xy[:, 0]), "y": ("sample", xy[:, 1])})
    response = client.post(
        "/v1/models/helmholtz/pig/predict", content=bytes(body.to_netcdf(engine="h5netcdf")),
        headers={"content-type": "application/x-netcdf"},
    )
    assert response.status_code == 200, response.text
    out = xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf").load()
    assert out["u"].dims == ("sample",)
    np.testing.assert_array_equal(out["u"].values, surrogates["pig"].predict(xy))


def test_concurrent_requests_are_micro_batched_and_agree(batched_url, surrogates):
    batches = [points(n, seed=10 + n) for n in (3, 5, 8, 1, 13, 2)]

    def ask(xy: np.ndarray) -> np.ndarray:
        with httpx.Client(base_url=batched_url, timeout=60) as c:
            return values(post(c, "helmholtz/pinn", {"x": xy[:, 0], "y": xy[:, 1]}))

    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(ask, batches))
    for xy, got in zip(batches, answers):
        np.testing.assert_allclose(got, surrogates["pinn"].predict(xy), rtol=1e-5, atol=1e-6)
    with httpx.Client(base_url=batched_url) as c:
        info = c.get("/v1/models/helmholtz/pinn").json()
    assert info["batching"] is True and info["usage"]["requests"] == len(batches)
    assert info["usage"]["samples"] == sum(len(b) for b in batches)


@pytest.mark.parametrize(
    "inputs, extra, status, code, words",
    [
        ({"x": [0.0, 1.5], "y": [0.0, 0.0]}, {}, 422, "outside_domain", ["1 of 2 point(s)", "x=1.5", "x in [-1, 1]"]),
        ({"x": [0.0, float("nan")], "y": [0.0, 0.0]}, {}, 422, "non_finite", ["'x'", "NaN"]),
        ({"x": [0.0, 0.5]}, {}, 422, "missing_input", ["'y'", "['x', 'y']"]),
        ({"x": [0.0], "y": [0.0], "z": [0.0]}, {}, 422, "unknown_input", ["'z'"]),
        ({"x": [[0.0, 0.5]], "y": [[0.0, 0.5]]}, {}, 422, "wrong_shape", ["(1, 2)"]),
        ({"x": [0.0, 0.5, 0.1], "y": [0.0, 0.5]}, {}, 422, "wrong_shape", ["disagree", "[2, 3]"]),
        ({"x": [], "y": []}, {}, 422, "wrong_shape", ["no samples"]),
        ({"x": [0.0], "y": [0.0]}, {"steps": 2}, 422, "steps_not_supported", ["cannot roll out"]),
        ({"x": [0.0], "y": [0.0]}, {"seed": 2}, 422, "seed_not_supported", ["deterministic"]),
        ({"x": [0.0] * 501, "y": [0.0] * 501}, {}, 413, "too_many_values", ["1002", "max_elements"]),
    ],
)
def test_bad_points_get_a_4xx_naming_the_problem(client, inputs, extra, status, code, words):
    response = post(client, "helmholtz/pig", inputs, **extra)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    for word in words:
        assert word in response.json()["detail"]
    assert client.get("/health").status_code == 200  # still serving


def test_openapi_documents_the_pointwise_request(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    generic = components["PointwisePredictRequest"]["properties"]["inputs"]["additionalProperties"]
    assert generic["anyOf"] == [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]
    specific = components["PointwisePredictRequest_x_y"]
    inputs = specific["properties"]["inputs"]
    assert inputs["required"] == ["x", "y"] and inputs["additionalProperties"] is False
    assert inputs["properties"]["x"]["anyOf"][0] == {"type": "number", "minimum": -1.0, "maximum": 1.0}
    assert "helmholtz/pig" in specific["description"] and "helmholtz/pinn" in specific["description"]
    predict = schema["paths"]["/v1/models/{name}/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/PointwisePredictRequest_x_y"} in body["anyOf"]
    assert {"$ref": "#/components/schemas/PredictRequest"} in body["anyOf"]
    assert "pointwise" in json.dumps(components["ModelInfo"]["properties"]["kind"])
    name = next(p for p in predict["parameters"] if p["name"] == "name")
    assert name["schema"]["enum"] == ["helmholtz/pig", "helmholtz/pinn"]


def test_schemathesis_requests_from_the_pointwise_schema_never_get_a_5xx(client):
    """Requests derived from the served OpenAPI document, whose JSON body is PredictRequest or the pointwise form."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import given, settings

    from .test_fuzz import FUZZ_SETTINGS

    schema = schemathesis.openapi.from_url(f"{client.base_url}/openapi.json")
    operation = schema["/v1/models/{name}/predict"]["POST"]
    statuses = []

    @settings(FUZZ_SETTINGS, max_examples=40)
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(base_url=str(client.base_url), timeout=60)
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.path_parameters, case.media_type, response.text)

    check()
    assert statuses and all(s < 500 for s in statuses)


def test_random_requests_never_get_a_5xx(client):
    """The fuzzers of test_fuzz.py on the pointwise models: the real coordinate names with any values and shapes."""
    from hypothesis import given
    from hypothesis import strategies as st

    from .test_fuzz import FUZZ_SETTINGS, junk_inputs, well_formed_inputs

    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}

    @FUZZ_SETTINGS
    @given(name=st.sampled_from(sorted(models)), data=st.data())
    def check(name, data):
        model = models[name]
        inputs = data.draw(st.one_of(well_formed_inputs(model), junk_inputs([v["name"] for v in model["inputs"]])))
        response = client.post(
            f"/v1/models/{name}/predict", content=json.dumps({"inputs": inputs}).encode(),
            headers={"content-type": "application/json"},
        )
        assert response.status_code < 500, (name, response.text)
        if response.status_code == 200:
            assert np.isfinite(np.asarray(response.json()["outputs"]["u"], dtype=np.float64)).all()
        else:
            assert response.json()["detail"]

    check()


# -- surrogates-evaluate ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pig", "pinn"])
def test_evaluate_compares_with_the_reference_on_the_task_test_grid(trained, tmp_path, name):
    from tests.cli.conftest import compose_config

    from surrogates.cli.evaluate import evaluate

    try:
        cfg = compose_config("evaluate", [f"ckpt={trained[name]['path']}"], tmp_path / "run")
        metrics = evaluate(cfg)
    finally:
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["metrics"] == metrics and written["kind"] == "pointwise" and written["pde"] == "helmholtz"
    assert written["resolution"] == EVAL_RESOLUTION[name] and written["domain"] == {"x": [-1.0, 1.0], "y": [-1.0, 1.0]}
    test = trained[name]["test"]
    assert metrics["rel_l2"] == pytest.approx(test["test/rel_l2"], rel=1e-5)
    assert metrics["max_abs_error"] == pytest.approx(test["test/max_abs_error"], rel=1e-5)
    grid = EVAL_RESOLUTION[name]
    assert metrics["n_points"] == (grid**2 if isinstance(grid, int) else int(np.prod(grid)))
    assert (tmp_path / "run" / "physics_informed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
