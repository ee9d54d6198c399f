"""Admission control: a bounded number of requests per model, the rest refused at once with 429.

A model computes at a fixed rate (a CPU-bound FNO: a few ms per sample); when clients send faster
than that, a queue without a bound grows until every request waits for all the others, and the
latency of each is the whole queue's. :class:`Admission` bounds the requests a model has accepted
and not yet answered (decoding, waiting in the micro-batcher, running, encoding): beyond
``limit`` the service answers 429 ``too_many_requests`` with ``Retry-After`` straight away, so the
admitted requests keep a latency of about ``limit`` requests' worth of work, and the client learns
that it should send more slowly (or to another replica) instead of waiting.

A count alone does not say how long the admitted wait: ``limit`` requests of 10 ms each on a CPU
are 80 ms, on a GPU that batches them perhaps 5 ms. With ``max_queue_s`` the admission also bounds
the *time*: it asks ``request_seconds()`` (the model's measured seconds per request, from its
micro-batcher) how long the requests already pending will keep the model busy, and refuses a
request that would wait longer than ``max_queue_s`` for them. A request that finds the model idle is
always admitted, so a slow model still answers one request at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from surrogates.serve.errors import ServiceError


@dataclass
class AdmissionStats:
    """Counters for ``GET /v1/models`` and tests: requests admitted, requests refused, most pending at once."""

    admitted: int = 0
    refused: int = 0
    refused_for_time: int = 0
    most_pending: int = 0


class Admission:
    """The admission limit of one model (used on the event loop only, so a plain counter is enough).

    Parameters
    ----------
    model
        The model's name, for the refusal's message.
    limit
        Most requests admitted and not yet answered (>= 1).
    retry_after_s
        What the ``Retry-After`` header of a refusal says, seconds (rounded up to a whole second, as HTTP
        requires; at least 1).
    max_queue_s
        Longest an admitted request may expect to wait for the requests pending before it, seconds
        (``None``: no bound in time, only ``limit``).
    request_seconds
        The model's current seconds per request (``None`` while it has not run yet); needed with ``max_queue_s``.
    """

    def __init__(
        self,
        model: str,
        limit: int,
        retry_after_s: float = 1.0,
        max_queue_s: float | None = None,
        request_seconds: Callable[[], float | None] | None = None,
    ):
        if limit < 1:
            raise ValueError(f"the admission limit must be >= 1, got {limit}")
        if max_queue_s is not None and (not max_queue_s > 0 or request_seconds is None):
            raise ValueError(f"max_queue_s must be > 0 and come with request_seconds, got {max_queue_s}")
        self.model, self.limit = model, int(limit)
        self.retry_after = str(max(1, math.ceil(retry_after_s)))
        self.max_queue_s, self.request_seconds = max_queue_s, request_seconds
        self.pending = 0
        self.stats = AdmissionStats()

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the model's slots for the ``with`` block.

        Raises
        ------
        ServiceError
            429 ``too_many_requests`` with ``Retry-After`` when ``limit`` requests are pending, or when the
            pending ones would keep the model busy for longer than ``max_queue_s``.
        """
        if self.pending >= self.limit:
            self._refuse(f"model {self.model!r} is working on {self.pending} requests, its limit (max_pending_requests)")
        wait = self.expected_wait_s()
        if wait is not None and wait > self.max_queue_s:
            self.stats.refused_for_time += 1
            self._refuse(
                f"model {self.model!r} is working on {self.pending} requests, about {1000 * wait:.0f} ms of work, "
                f"more than its limit of {1000 * self.max_queue_s:.0f} ms (max_queue_ms)"
            )
        self.pending += 1
        self.stats.admitted += 1
        self.stats.most_pending = max(self.stats.most_pending, self.pending)
        try:
            yield
        finally:
            self.pending -= 1

    def expected_wait_s(self) -> float | None:
        """Seconds of work pending before a new request: pending requests x the model's seconds per request
        (``None`` without ``max_queue_s`` or before the model's first call)."""
        if self.max_queue_s is None:
            return None
        per_request = self.request_seconds()
        return None if per_request is None else self.pending * per_request

    def _refuse(self, why: str) -> None:
        self.stats.refused += 1
        raise ServiceError(
            429, "too_many_requests", f"{why}; retry after {self.retry_after} s", headers={"Retry-After": self.retry_after}
        )
