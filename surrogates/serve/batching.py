"""Micro-batching: concurrent requests to one model run as one batched call in a worker thread.

:class:`MicroBatcher` serves one model. ``await batcher.submit(x)`` with ``x`` of shape
``(n, C, *spatial)`` returns that request's outputs. With batching enabled, a single consumer task
collects requests whose per-sample shape ``x.shape[1:]`` equals the oldest waiting request's, until
``max_batch_size`` samples are waiting or the oldest has waited ``max_wait_ms``; it concatenates them,
runs the model once in the model's worker thread and hands every request its rows. Requests that
arrived while the model was busy have already waited, so they go out as the next batch at once: under
load, batches form from the queue without extra delay; a lone request waits at most ``max_wait_ms``.

With batching disabled every request runs alone in the same worker thread. Either way inference
never runs on the event loop, and one worker thread per model keeps the device's work serialized
(torch parallelizes each call over the CPU cores itself).

If a batched call raises, its requests are rerun one by one, so a request that breaks the model only
fails itself.

With ``chunk_size``, a request with more samples runs as consecutive calls of at most ``chunk_size``
samples, each queued after the previous one finished: the activations of one call stay bounded
whatever the request's size, and requests that arrive meanwhile run between two chunks instead of
after the whole request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surrogates.serve.memory import release_free_memory

log = logging.getLogger("surrogates.serve")

Outputs = tuple[dict[str, np.ndarray], dict[str, Any]]


@dataclass
class _Job:
    x: np.ndarray
    future: asyncio.Future
    arrived: float


@dataclass
class BatchStats:
    """Counters for monitoring and tests."""

    requests: int = 0
    calls: int = 0
    samples: int = 0
    largest_batch: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    request_seconds: float | None = None
    """Seconds of model work per request: a running mean (weight ``REQUEST_SECONDS_WEIGHT`` on the newest
    call) of each call's seconds over its requests; ``None`` before the first call."""

    def record(self, requests: int, samples: int) -> None:
        self.calls += 1
        self.requests += requests
        self.samples += samples
        self.largest_batch = max(self.largest_batch, samples)
        if len(self.batch_sizes) < 10_000:
            self.batch_sizes.append(samples)

    def record_time(self, requests: int, seconds: float) -> None:
        """Fold one call of ``requests`` requests that took ``seconds`` into :attr:`request_seconds`."""
        per_request = seconds / max(requests, 1)
        previous = self.request_seconds
        self.request_seconds = per_request if previous is None else (
            previous + REQUEST_SECONDS_WEIGHT * (per_request - previous)
        )


REQUEST_SECONDS_WEIGHT = 0.2
"""Weight of the newest call in :attr:`BatchStats.request_seconds`: follows a change of load within ~10 calls."""


class MicroBatcher:
    """Per-model request batching on an asyncio event loop.

    Parameters
    ----------
    run
        ``x (B, C, *spatial) -> ({name: (B, ...)}, info)``; called in ``executor``.
    executor
        Where ``run`` executes (one worker thread per model).
    enabled
        Gather concurrent requests (``True``) or run each alone (``False``).
    max_batch_size
        Most samples per batched call; a request with more samples runs alone (in chunks with ``chunk_size``).
    max_wait_ms
        Longest a request waits for companions.
    chunk_size
        Most samples of one request per call of ``run``: a larger request runs chunk after chunk, each chunk
        queued as a request of its own once the previous one is done. ``None``: a request runs in one call.
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], Outputs],
        executor: Executor,
        enabled: bool = True,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        chunk_size: int | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run = run
        self.executor = executor
        self.enabled = enabled
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self.chunk_size = chunk_size
        self.stats = BatchStats()
        self._queue: list[_Job] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, x: np.ndarray) -> Outputs:
        """Outputs of ``run`` for this request's samples only, ``{name: (n, ...)}``, and the last call's info."""
        if self.chunk_size is None or len(x) <= self.chunk_size:
            return await self._submit(x)
        parts, info = [], {}
        loop = asyncio.get_running_loop()
        for start in range(0, len(x), self.chunk_size):  # one chunk in the queue at a time: others run between
            outputs, info = await self._submit(x[start : start + self.chunk_size])
            parts.append(outputs)
            # the next chunk reuses the memory this one freed instead of extending the heap
            await loop.run_in_executor(self.executor, release_free_memory)
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}, info

    async def _submit(self, x: np.ndarray) -> Outputs:
        loop = asyncio.get_running_loop()
        if not self.enabled:
            self.stats.record(1, len(x))
            return await self._call(x, requests=1)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._consume(), name="micro-batcher")
        job = _Job(x, loop.create_future(), loop.time())
        self._queue.append(job)
        self._wake.set()
        return await job.future

    async def close(self) -> None:
        """Stop the consumer task; waiting requests are cancelled."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for job in self._queue:
            if not job.future.done():
                job.future.cancel()
        self._queue.clear()

    # -- consumer ---------------------------------------------------------------------------------
    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            self._queue = [job for job in self._queue if not job.future.done()]  # drop cancelled requests
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self._queue[0]
            key = first.x.shape[1:]
            waiting = sum(len(job.x) for job in self._queue if job.x.shape[1:] == key)
            remaining = first.arrived + self.max_wait - loop.time()
            if waiting < self.max_batch_size and remaining > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                continue
            batch, total, rest = [], 0, []
            for job in self._queue:
                if job.x.shape[1:] == key and (not batch or total + len(job.x) <= self.max_batch_size):
                    batch.append(job)
                    total += len(job.x)
                else:
                    rest.append(job)
            self._queue = rest
            await self._execute(batch)

    async def _call(self, x: np.ndarray, requests: int) -> Outputs:
        """``run(x)`` in the worker thread, its seconds folded into ``stats.request_seconds``."""
        outputs, seconds = await asyncio.get_running_loop().run_in_executor(self.executor, timed, self.run, x)
        self.stats.record_time(requests, seconds)
        return outputs

    async def _execute(self, batch: list[_Job]) -> None:
        try:
            if len(batch) == 1:
                results = [await self._call(batch[0].x, requests=1)]
            else:
                x = np.concatenate([job.x for job in batch])
                outputs, info = await self._call(x, requests=len(batch))
                results, start = [], 0
                for job in batch:
                    stop = start + len(job.x)
                    results.append(({name: value[start:stop] for name, value in outputs.items()}, info))
                    start = stop
            self.stats.record(len(batch), sum(len(job.x) for job in batch))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0].future, error=error)
                return
            log.warning("batched call of %d requests failed (%s); running them one by one", len(batch), error)
            for job in batch:
                await self._execute([job])
            return
        for job, result in zip(batch, results):
            _settle(job.future, result=result)


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(fn(*args), seconds)``: run in the model's worker thread, the seconds are the call's own, not the
    wait for the thread."""
    started = time.perf_counter()
    return fn(*args), time.perf_counter() - started


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
