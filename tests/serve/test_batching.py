"""The micro-batcher on its own: grouping by shape, batch limits, error isolation, the unbatched mode."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from surrogates.serve.batching import MicroBatcher


class Recorder:
    """A runner that doubles its input and records each call's batch shape and thread."""

    def __init__(self, fail_on: float | None = None):
        self.calls: list[tuple[int, ...]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, x: np.ndarray):
        self.calls.append(x.shape)
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and (x == self.fail_on).any():
            raise ValueError("bad sample")
        return {"y": 2 * x[:, 0]}, {}


def run_all(batcher: MicroBatcher, xs: list[np.ndarray]) -> list:
    async def main():
        try:
            return await asyncio.gather(*[batcher.submit(x) for x in xs], return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(main())


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-test") as pool:
        yield pool


def test_concurrent_requests_share_calls_and_get_their_own_rows(executor):
    runner = Recorder()
    batcher = MicroBatcher(runner, executor, max_batch_size=4, max_wait_ms=50)
    xs = [np.full((1, 1, 3), k, dtype=np.float32) for k in range(10)]
    results = run_all(batcher, xs)
    for k, (outputs, _) in enumerate(results):
        np.testing.assert_array_equal(outputs["y"], np.full((1, 3), 2 * k))
    assert [shape[0] for shape in runner.calls] == [4, 4, 2]
    assert runner.threads == {"model-test_0"}  # never on the event loop's thread


def test_requests_of_different_shapes_are_not_mixed(executor):
    runner = Recorder()
    batcher = MicroBatcher(runner, executor, max_batch_size=8, max_wait_ms=20)
    xs = [np.ones((1, 1, 3 + k % 2), dtype=np.float32) * k for k in range(6)]
    results = run_all(batcher, xs)
    assert sorted(shape for shape in runner.calls) == [(3, 1, 3), (3, 1, 4)]
    for k, (outputs, _) in enumerate(results):
        assert outputs["y"].shape == (1, 3 + k % 2) and outputs["y"][0, 0] == 2 * k


def test_a_request_larger_than_the_batch_runs_alone(executor):
    runner = Recorder()
    batcher = MicroBatcher(runner, executor, max_batch_size=4, max_wait_ms=20)
    results = run_all(batcher, [np.ones((6, 1, 2), np.float32), np.ones((1, 1, 2), np.float32)])
    assert sorted(runner.calls) == [(1, 1, 2), (6, 1, 2)]
    assert results[0][0]["y"].shape == (6, 2)


def test_a_failing_request_fails_alone(executor):
    runner = Recorder(fail_on=-1.0)
    batcher = MicroBatcher(runner, executor, max_batch_size=8, max_wait_ms=50)
    xs = [np.full((1, 1, 2), k, dtype=np.float32) for k in (1, -1, 2, 3)]
    results = run_all(batcher, xs)
    assert isinstance(results[1], ValueError)
    assert [r[0]["y"][0, 0] for i, r in enumerate(results) if i != 1] == [2, 4, 6]


def test_disabled_batching_runs_every_request_alone(executor):
    runner = Recorder()
    batcher = MicroBatcher(runner, executor, enabled=False)
    results = run_all(batcher, [np.full((1, 1, 2), k, np.float32) for k in range(5)])
    assert runner.calls == [(1, 1, 2)] * 5
    assert [r[0]["y"][0, 0] for r in results] == [0, 2, 4, 6, 8]
    assert runner.threads == {"model-test_0"}


def test_a_lone_request_waits_at_most_max_wait(executor):
    runner = Recorder()
    batcher = MicroBatcher(runner, executor, max_batch_size=32, max_wait_ms=30)

    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(np.ones((1, 1, 2), np.float32))
        elapsed = loop.time() - start
        await batcher.close()
        return elapsed

    assert 0.025 <= asyncio.run(main()) < 1.0


def test_invalid_settings_are_refused(executor):
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(Recorder(), executor, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(Recorder(), executor, max_wait_ms=-1)


def test_a_large_request_runs_in_chunks_and_a_later_small_one_runs_between_them(executor):
    entered, gate = threading.Event(), threading.Event()

    class Gated(Recorder):
        def __call__(self, x):
            if not self.calls:  # hold the first chunk until the small request is queued
                entered.set()
                gate.wait(30)
            return super().__call__(x)

    runner = Gated()
    batcher = MicroBatcher(runner, executor, max_batch_size=4, max_wait_ms=0, chunk_size=4)
    big = np.arange(10, dtype=np.float32).reshape(10, 1, 1)
    small = np.full((1, 1, 1), -1.0, np.float32)

    async def main():
        first = asyncio.ensure_future(batcher.submit(big))
        while not entered.is_set():  # the first chunk is with the worker thread
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(batcher.submit(small))
        await asyncio.sleep(0.01)  # the small request is queued behind the running chunk
        gate.set()
        try:
            return await first, await second
        finally:
            await batcher.close()

    (big_out, _), (small_out, _) = asyncio.run(main())
    assert runner.calls == [(4, 1, 1), (1, 1, 1), (4, 1, 1), (2, 1, 1)]  # never more than 4 samples per call
    np.testing.assert_array_equal(big_out["y"], 2 * big[:, 0])
    np.testing.assert_array_equal(small_out["y"], [[-2.0]])
