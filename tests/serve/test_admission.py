"""Admission control and chunked model work: a burst beyond ``max_pending_requests`` gets 429 with
``Retry-After`` at once, the admitted requests get their own answers, and a large request runs in chunks of
``max_batch_size`` samples."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from surrogates.serve.admission import Admission
from surrogates.serve.app import ServeSettings, create_app
from surrogates.serve.errors import ServiceError

from .conftest import LiveServer
from .test_app import darcy_inputs, surrogate  # noqa: F401 (fixtures: the Darcy test inputs, the served FNO)

PATH = "/v1/models/fno-darcy/predict"


async def _held_burst(client: httpx.AsyncClient, inputs: np.ndarray, burst: int, gate: threading.Event,
                      decided) -> list[httpx.Response]:
    """``burst`` requests at once while the model's calls wait on ``gate``; the gate opens once ``decided()``
    (every admission decision made) or after 30 s (the test then fails on the answers)."""
    sends = [asyncio.ensure_future(client.post(PATH, json={"inputs": {"a": inputs[k].tolist()}})) for k in range(burst)]
    deadline = time.monotonic() + 30
    while not decided() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    gate.set()
    return await asyncio.gather(*sends)


def test_admission_refuses_beyond_its_limit_until_a_slot_is_free():
    admission = Admission("m", limit=2, retry_after_s=1.5)
    with admission.admit(), admission.admit():
        with pytest.raises(ServiceError) as refused, admission.admit():
            pass
        assert refused.value.status == 429 and refused.value.code == "too_many_requests"
        assert refused.value.headers == {"Retry-After": "2"}  # whole seconds, rounded up
        assert "max_pending_requests" in refused.value.message
    assert admission.pending == 0
    with admission.admit():  # a failing request frees its slot too
        pass
    with pytest.raises(ValueError), admission.admit():
        raise ValueError("the request failed")
    assert admission.pending == 0 and admission.stats.refused == 1 and admission.stats.most_pending == 2
    with pytest.raises(ValueError, match=">= 1"):
        Admission("m", limit=0)


def test_a_burst_beyond_the_limit_gets_429_and_the_admitted_requests_their_own_answers(registry, surrogate, darcy_inputs):
    limit, burst = 3, 10
    app = create_app(registry, ServeSettings(max_batch_size=4, max_wait_ms=1.0, max_pending_requests=limit, retry_after_s=2))
    batcher, admission = app.state.batchers["fno-darcy"], app.state.admissions["fno-darcy"]
    gate, run = threading.Event(), batcher.run
    batcher.run = lambda x: (gate.wait(30), run(x))[1]  # the model holds its first call until the burst is in

    async def send_burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await _held_burst(client, darcy_inputs, burst, gate, lambda: admission.stats.refused >= burst - limit)

    with LiveServer(app) as server:
        responses = asyncio.run(send_burst(server.url))
        statuses = [r.status_code for r in responses]
        assert sorted(statuses) == [200] * limit + [429] * (burst - limit), statuses
        for k, response in enumerate(responses):
            if response.status_code == 429:
                assert response.headers["retry-after"] == "2"
                assert response.json()["code"] == "too_many_requests"
            else:  # its own sample's prediction, to float32 round-off (it may have run in a batch)
                answer = np.asarray(response.json()["outputs"]["u"], dtype=np.float32)
                np.testing.assert_allclose(answer, surrogate.predict(darcy_inputs[k]), rtol=1e-5, atol=1e-6)
        assert admission.pending == 0 and admission.stats.most_pending == limit
        with httpx.Client(base_url=server.url, timeout=60) as client:  # the slots are free again
            assert client.post(PATH, json={"inputs": {"a": darcy_inputs[0].tolist()}}).status_code == 200
            usage = client.get("/v1/models/fno-darcy").json()["usage"]
        assert usage["refused"] == burst - limit and usage["most_pending"] == limit


def test_a_request_larger_than_max_batch_size_runs_in_chunks_of_it(registry, surrogate, darcy_inputs):
    app = create_app(registry, ServeSettings(max_batch_size=4, max_wait_ms=1.0))
    batcher = app.state.batchers["fno-darcy"]
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post(PATH, json={"inputs": {"a": darcy_inputs[:10].tolist()}})
    assert response.status_code == 200, response.text
    assert batcher.stats.calls == 3 and batcher.stats.largest_batch == 4  # 4 + 4 + 2 samples
    answer = np.asarray(response.json()["outputs"]["u"], dtype=np.float32)
    expected = surrogate.predict(darcy_inputs[:10], batch_size=4)  # the same chunks: the same bits
    assert np.array_equal(answer.view(np.uint32), expected.view(np.uint32))


def test_admission_by_time_refuses_a_request_that_would_wait_longer_than_max_queue():
    per_request = [None]
    admission = Admission("m", limit=100, max_queue_s=0.025, request_seconds=lambda: per_request[0])
    with admission.admit(), admission.admit(), admission.admit():  # no measurement yet: only the count bounds
        assert admission.expected_wait_s() is None
    per_request[0] = 0.010  # 10 ms a request: 0, 1 and 2 pending (0 to 20 ms of work) admit, 3 (30 ms) refuses
    with admission.admit(), admission.admit(), admission.admit():
        assert admission.expected_wait_s() == pytest.approx(0.030)
        with pytest.raises(ServiceError) as refused, admission.admit():
            pass
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    assert "max_queue_ms" in refused.value.message and "30 ms" in refused.value.message
    assert admission.stats.refused == admission.stats.refused_for_time == 1 and admission.pending == 0
    per_request[0] = 10.0  # a model slower than the bound still answers one request at a time
    with admission.admit():
        with pytest.raises(ServiceError), admission.admit():
            pass
    with pytest.raises(ValueError, match="max_queue_s"):
        Admission("m", limit=1, max_queue_s=0.0, request_seconds=lambda: 1.0)
    with pytest.raises(ValueError, match="request_seconds"):
        Admission("m", limit=1, max_queue_s=1.0)


def test_the_batchers_seconds_per_request_is_a_running_mean_of_its_calls():
    from surrogates.serve.batching import REQUEST_SECONDS_WEIGHT, BatchStats

    stats = BatchStats()
    stats.record_time(requests=4, seconds=0.08)  # the first call sets it: 20 ms a request
    assert stats.request_seconds == pytest.approx(0.02, rel=1e-12)
    stats.record_time(requests=1, seconds=0.05)
    assert stats.request_seconds == pytest.approx(0.02 + REQUEST_SECONDS_WEIGHT * (0.05 - 0.02), rel=1e-12)


def test_max_queue_ms_bounds_the_admitted_requests_by_the_models_measured_time(registry, surrogate, darcy_inputs):
    burst, floor_s, max_queue_ms = 10, 0.05, 120.0
    app = create_app(registry, ServeSettings(max_batch_size=1, max_wait_ms=0.0, max_pending_requests=100,
                                             max_queue_ms=max_queue_ms))
    batcher, admission = app.state.batchers["fno-darcy"], app.state.admissions["fno-darcy"]
    run, gate = batcher.run, threading.Event()
    batcher.run = lambda x: (time.sleep(floor_s), run(x))[1]  # at least 50 ms a request, whatever the machine

    async def send_burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            first = await client.post(PATH, json={"inputs": {"a": darcy_inputs[0].tolist()}})  # measures the model
            assert first.status_code == 200 and batcher.stats.request_seconds >= floor_s
            batcher.run = lambda x: (gate.wait(30), run(x))[1]  # then holds its calls until the burst is in
            decided = lambda: admission.stats.admitted + admission.stats.refused >= burst + 1  # noqa: E731
            return await _held_burst(client, darcy_inputs, burst, gate, decided)

    with LiveServer(app) as server:
        responses = asyncio.run(send_burst(server.url))
        statuses = [r.status_code for r in responses]
        admitted = statuses.count(200)
        # pending p admits while p x (>= 50 ms) <= 120 ms: p = 0 always, p = 3 never, so 1 to 3 requests
        assert 1 <= admitted <= 3 and statuses.count(429) == burst - admitted, statuses
        assert admission.stats.refused_for_time == burst - admitted and admission.stats.most_pending <= 3
        for k, response in enumerate(responses):
            if response.status_code == 200:
                answer = np.asarray(response.json()["outputs"]["u"], dtype=np.float32)
                np.testing.assert_allclose(answer, surrogate.predict(darcy_inputs[k]), rtol=1e-5, atol=1e-6)
            else:
                assert "max_queue_ms" in response.json()["detail"]
        with httpx.Client(base_url=server.url, timeout=60) as client:
            usage = client.get("/v1/models/fno-darcy").json()["usage"]
        assert usage["refused_for_time"] == burst - admitted and usage["ms_per_request"] > 0  # a mean of all calls since
