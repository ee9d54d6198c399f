"""Admission control: a bounded number of requests per model, the rest refused at once with 429.

A model computes at a fixed rate (a CPU-bound FNO: a few ms per sample); when clients send faster
than that, a queue without a bound grows until every request waits for all the others, and the
latency of each is the whole queue's. :class:`Admission` bounds the requests a model has accepted
and not yet answered (decoding, waiting in the micro-batcher, running, encoding): beyond
``limit`` the service answers 429 ``too_many_requests`` with ``Retry-After`` straight away, so the
admitted requests keep a latency of about ``limit`` requests' worth of work, and the client learns
that it should send more slowly (or to another replica) instead of waiting.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from surrogates.serve.errors import ServiceError


@dataclass
class AdmissionStats:
    """Counters for ``GET /v1/models`` and tests: requests admitted, requests refused, most pending at once."""

    admitted: int = 0
    refused: int = 0
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
    """

    def __init__(self, model: str, limit: int, retry_after_s: float = 1.0):
        if limit < 1:
            raise ValueError(f"the admission limit must be >= 1, got {limit}")
        self.model, self.limit = model, int(limit)
        self.retry_after = str(max(1, math.ceil(retry_after_s)))
        self.pending = 0
        self.stats = AdmissionStats()

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the model's slots for the ``with`` block.

        Raises
        ------
        ServiceError
            429 ``too_many_requests`` with ``Retry-After`` when ``limit`` requests are pending.
        """
        if self.pending >= self.limit:
            self.stats.refused += 1
            raise ServiceError(
                429, "too_many_requests",
                f"model {self.model!r} is working on {self.pending} requests, its limit (max_pending_requests); "
                f"retry after {self.retry_after} s",
                headers={"Retry-After": self.retry_after},
            )
        self.pending += 1
        self.stats.admitted += 1
        self.stats.most_pending = max(self.stats.most_pending, self.pending)
        try:
            yield
        finally:
            self.pending -= 1
