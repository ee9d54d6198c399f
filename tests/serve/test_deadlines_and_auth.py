"""Time limits and access: a request past its deadline gets 504 and its model work stops, a client that
disconnects stops its work too, a long rollout does not hold up a short request to the same model, and an
optional bearer token guards every route but ``/health``.

Two models count the steps they run, so that the tests see the work stop, not only the answer:
``slow-heat``, a stand-in whose outputs are its inputs (rolled out one step per worker-thread job by the
app), and ``ks/refiner``, a PDE-Refiner checkpoint that rolls out itself (in time slices); a forward hook
on its network counts evaluations. Both sleep a little per step so that rollouts last long enough to
interrupt. The assertions are about order and counts, not durations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from surrogates.serve.app import ServeSettings, create_app
from surrogates.serve.loaders.rollout import load_rollout_checkpoint
from surrogates.serve.registry import ModelEntry, Registry, Variable
from surrogates.serve.rollout import RolloutSurrogate

from .conftest import LiveServer, save_rollout_checkpoint

N = 32  # grid points of the refiner's states
PARAMS = {"dt": 0.8, "dx": 0.25}
TOKEN = "correct-horse-battery-staple"


class Counter:
    """Counts model steps from any thread; each step sleeps ``delay`` seconds."""

    def __init__(self, delay: float):
        self.delay = delay
        self.count = 0
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self.count += 1
        time.sleep(self.delay)

    def settled(self, quiet: float = 0.5) -> int:
        """The count once it has not grown for ``quiet`` seconds (work in flight has ended)."""
        before = self.count
        for _ in range(20):
            time.sleep(quiet)
            if self.count == before:
                return before
            before = self.count
        raise AssertionError(f"the model kept working: {self.count} steps and counting")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread: on a loaded machine two threads can each wait for the other at every operation,
    making steps so slow that the counts below would look still while work goes on."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def counters() -> dict[str, Counter]:
    return {"slow-heat": Counter(0.01), "ks/refiner": Counter(0.002)}


@pytest.fixture(scope="module")
def refiner(tmp_path_factory) -> Path:
    return save_rollout_checkpoint(tmp_path_factory.mktemp("deadline_models") / "refiner.ckpt", 2)


def _registry(refiner: Path, counters: dict[str, Counter]) -> Registry:
    heat = counters["slow-heat"]

    def slow_identity(x: np.ndarray):
        heat.tick()
        return {"u": x[:, 0].copy()}, {}

    surrogate = RolloutSurrogate.load(refiner)
    surrogate.model.unet.register_forward_hook(lambda *_: counters["ks/refiner"].tick())
    registry = Registry()
    registry.add(ModelEntry(
        name="slow-heat", kind="surrogate", source="slow-heat.ckpt", inputs=[Variable("u", ("x",))],
        outputs=[Variable("u", ("x",))], spatial_dims=["x"], batchable=True, runner=slow_identity,
    ))
    registry.add(load_rollout_checkpoint(refiner, "ks/refiner", "cpu", surrogate=surrogate))
    return registry


def _serve(refiner: Path, counters: dict[str, Counter], **settings) -> Iterator[LiveServer]:
    settings = {"max_steps": 100_000, "max_wait_ms": 1.0, **settings}
    with LiveServer(create_app(_registry(refiner, counters), ServeSettings(**settings))) as live:
        yield live


@pytest.fixture(scope="module")
def server(refiner, counters) -> Iterator[LiveServer]:
    """No deadline to speak of; short rollout slices."""
    yield from _serve(refiner, counters, request_timeout_s=60.0, rollout_slice_ms=20.0)


@pytest.fixture(scope="module")
def hurried_server(refiner, counters) -> Iterator[LiveServer]:
    """A deadline of half a second; slices longer than any rollout, so that only the cancellation checked
    between steps can stop a self-rolling model's work."""
    yield from _serve(refiner, counters, request_timeout_s=0.5, rollout_slice_ms=600_000)


@pytest.fixture(scope="module")
def guarded_server(refiner, counters) -> Iterator[LiveServer]:
    """A bearer token."""
    yield from _serve(refiner, counters, api_token=TOKEN)


def _body(name: str, steps: int | None = None) -> dict:
    x = np.linspace(0, 2 * np.pi, N, endpoint=False)
    inputs = {"u": np.sin(x).tolist(), **(PARAMS if name == "ks/refiner" else {})}
    return {"inputs": inputs, **({"steps": steps} if steps else {})}


def _post(url: str, name: str, steps: int | None = None, timeout: float = 60, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{name}/predict", json=_body(name, steps), timeout=timeout, **kwargs)


# -- deadline -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["slow-heat", "ks/refiner"])
def test_past_the_deadline_the_answer_is_504_and_the_work_stops(hurried_server, counters, name):
    counter = counters[name]
    before = counter.settled(0.1)
    response = _post(hurried_server.url, name, steps=5000)  # tens of seconds of work
    assert response.status_code == 504
    assert response.json()["code"] == "deadline_exceeded" and "request_timeout_s" in response.json()["detail"]
    ran = counter.settled() - before
    assert 0 < ran < 2500, ran  # it started, and stopped long before the end (about 0.5 s of steps)
    # the model serves the next request at once
    assert _post(hurried_server.url, name).status_code == 200


def test_the_deadline_is_reported_in_the_openapi_schema(hurried_server):
    responses = httpx.get(f"{hurried_server.url}/openapi.json").json()["paths"]["/v1/models/{name}/predict"]["post"]
    assert "504" in responses["responses"]


# -- disconnects ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["slow-heat", "ks/refiner"])
def test_a_client_that_disconnects_stops_its_work(server, counters, name):
    counter = counters[name]
    before = counter.settled(0.1)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        _post(server.url, name, steps=5000, timeout=0.5)
    ran = counter.settled() - before
    assert 0 < ran < 2500, ran
    assert _post(server.url, name).status_code == 200


# -- a long rollout does not hold up a short request ---------------------------------------------------
@pytest.mark.parametrize("name", ["slow-heat", "ks/refiner"])
def test_a_short_request_finishes_before_a_long_rollout_started_earlier(server, counters, name):
    counter = counters[name]
    before = counter.settled(0.1)
    finished: list[str] = []
    answers: dict[str, httpx.Response] = {}

    def send(label: str, steps: int | None) -> None:
        answers[label] = _post(server.url, name, steps=steps)
        finished.append(label)

    long = threading.Thread(target=send, args=("long", 150))
    long.start()
    while counter.count == before:  # the long rollout is running
        time.sleep(0.005)
    send("short", None)
    long.join()
    assert finished == ["short", "long"]
    assert answers["short"].status_code == 200 and answers["long"].status_code == 200
    assert np.asarray(answers["long"].json()["outputs"]["u"]).shape == (150, N)


def test_a_rollout_in_slices_equals_the_python_rollout(server, refiner):
    """Slicing changes where the worker thread pauses, not the numbers: the refiner's noise generator and its
    normalized state carry over from slice to slice."""
    response = _post(server.url, "ks/refiner", steps=60)
    assert response.status_code == 200
    x = np.asarray(_body("ks/refiner")["inputs"]["u"], dtype=np.float32)
    expected = RolloutSurrogate.load(refiner).rollout(x, 60, seed=0, **PARAMS)
    np.testing.assert_array_equal(np.asarray(response.json()["outputs"]["u"], dtype=np.float32), expected)
    # its slices are timed like batched calls, so max_queue_ms also knows this model's cost
    usage = httpx.get(f"{server.url}/v1/models/ks/refiner").json()["usage"]
    assert usage["ms_per_request"] is not None and usage["ms_per_request"] > 0


# -- bearer token ---------------------------------------------------------------------------------------
def test_without_the_token_every_route_but_health_answers_401(guarded_server):
    with httpx.Client(base_url=guarded_server.url) as client:
        assert client.get("/health").status_code == 200
        for method, path in [
            ("GET", "/v1/models"), ("GET", "/v1/models/slow-heat"), ("POST", "/v1/models/slow-heat/predict"),
            ("OPTIONS", "/v1/models/slow-heat/predict"), ("GET", "/openapi.json"), ("GET", "/docs"),
            ("GET", "/no/such/path"),
        ]:
            response = client.request(method, path, json=_body("slow-heat") if method == "POST" else None)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    "authorization", [f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", TOKEN]
)
def test_a_wrong_token_answers_401(guarded_server, authorization):
    response = httpx.get(f"{guarded_server.url}/v1/models", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


def test_the_token_opens_every_route(guarded_server):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded_server.url, headers=headers, timeout=60) as client:
        assert client.get("/v1/models").status_code == 200
        assert client.post("/v1/models/slow-heat/predict", json=_body("slow-heat")).status_code == 200
        assert client.options("/v1/models/slow-heat/predict").status_code == 204
        assert client.get("/v1/models/slow-heat").status_code == 200
        assert client.get("/no/such/path").status_code == 404
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        **schema["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"
    }
    assert schema["security"] == [{"bearerAuth": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []
    assert "401" in schema["paths"]["/v1/models"]["get"]["responses"]


def test_without_a_token_nothing_is_guarded_or_declared(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {}) and "security" not in schema
    assert httpx.get(f"{server.url}/v1/models").status_code == 200


def test_the_token_is_not_in_the_settings_repr():
    assert TOKEN not in repr(ServeSettings(api_token=TOKEN))


def test_the_token_comes_from_the_environment_variable_named_in_the_config(monkeypatch):
    from surrogates.cli.serve import api_token

    monkeypatch.setenv("SURROGATES_TEST_TOKEN", TOKEN)
    assert api_token("SURROGATES_TEST_TOKEN") == TOKEN
    monkeypatch.setenv("SURROGATES_TEST_TOKEN", "")
    assert api_token("SURROGATES_TEST_TOKEN") is None  # an empty variable sets no token
    monkeypatch.delenv("SURROGATES_TEST_TOKEN")
    assert api_token("SURROGATES_TEST_TOKEN") is None and api_token(None) is None


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [("0.0.0.0", None, True), ("192.168.1.7", None, True), ("example.org", None, True), ("::", None, True),
     ("0.0.0.0", TOKEN, False), ("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False)],
)
def test_binding_beyond_loopback_without_a_token_warns(caplog, host, token, warned):
    from surrogates.cli.serve import warn_if_exposed

    with caplog.at_level(logging.WARNING, logger="surrogates.serve"):
        warn_if_exposed(host, token)
    assert any("not a loopback address" in r.getMessage() for r in caplog.records) == warned


# -- request forms --------------------------------------------------------------------------------------
def test_steps_and_seed_appear_only_in_the_request_forms_of_the_models_that_take_them(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    components = schema["components"]["schemas"]
    forms = {key: components[key] for key in components if key.startswith("PredictRequest")}
    assert {key: set(form["properties"]) for key, form in forms.items()} == {
        "PredictRequest": {"inputs"},
        "PredictRequest_steps": {"inputs", "steps"},  # slow-heat rolls out (its outputs are its inputs)
        "PredictRequest_steps_seed": {"inputs", "steps", "seed"},  # the refiner also takes a seed
    }
    assert "['slow-heat']" in forms["PredictRequest_steps"]["description"]
    assert "['ks/refiner']" in forms["PredictRequest_steps_seed"]["description"]
    body = schema["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in body["anyOf"]] == list(forms)
