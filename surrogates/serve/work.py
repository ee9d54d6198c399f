"""Bounding a request's model work in time: a deadline, client disconnects, and rollouts in time slices.

- :class:`CancelToken` is shared by a request's coroutine and the worker thread running its model;
  the thread checks it between rollout steps, so cancelled work stops at the next step boundary
  instead of running to the end in the background.
- :func:`guard` awaits a request's model work while watching its deadline and its client: past the
  deadline it cancels the work and answers 504 ``deadline_exceeded``; when the client has gone it
  cancels the work too (no answer can reach it).
- :func:`advance` runs a slice of a rollout in the worker thread: steps until about ``budget_s``
  seconds have passed (at least one step). The caller submits the next slice as a new job of the
  model's one-thread executor, so requests that queued meanwhile run between two slices: a long
  rollout delays a short request by about one slice, not by the whole rollout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from starlette.requests import Request

from surrogates.serve.errors import ServiceError

T = TypeVar("T")

DISCONNECT_POLL_S = 0.1
"""How often :func:`guard` asks whether the client is still connected (a cheap, non-blocking check)."""


class Cancelled(Exception):
    """Raised in the event loop when a request's work was stopped (``reason``: ``deadline`` or ``disconnected``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CancelToken:
    """A flag that a request's coroutine sets and its worker thread reads between steps.

    A :class:`threading.Event` underneath: setting and reading it is safe from any thread.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str) -> None:
        """Ask the work to stop at its next step boundary; the first reason given is kept."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def advance(steps: Iterator[T], count: int, budget_s: float, token: CancelToken) -> list[T]:
    """Up to ``count`` items of ``steps``, stopping once ``budget_s`` seconds have passed (after at least one
    item) or when ``token`` is cancelled (then possibly none). Runs in a model's worker thread.

    Parameters
    ----------
    steps
        One rollout step per item, computed when the item is asked for.
    count
        Steps the request still needs.
    budget_s
        Length of the slice: after it the worker thread is given back to the requests waiting for it.
    token
        Checked before every step.

    Returns
    -------
    list
        The items computed, in order.
    """
    done: list[T] = []
    started = time.perf_counter()
    while len(done) < count and not token.cancelled:
        done.append(next(steps))
        if time.perf_counter() - started >= budget_s:
            break
    return done


async def guard(work: Awaitable[T], token: CancelToken, request: Request, deadline: float, timeout_s: float) -> T:
    """The result of ``work``, unless the request's deadline passes or its client disconnects first.

    Parameters
    ----------
    work
        The request's model work (a coroutine); cancelled on either event.
    token
        Cancelled on either event (and when this coroutine is itself cancelled), so that the worker
        thread stops at its next step.
    request
        Asked every :data:`DISCONNECT_POLL_S` seconds whether its client is gone.
    deadline
        ``time.monotonic()`` value after which the request gets 504.
    timeout_s
        The configured ``request_timeout_s``, named in the answer.

    Raises
    ------
    ServiceError
        504 ``deadline_exceeded`` past the deadline.
    Cancelled
        ``reason="disconnected"`` when the client went away (nobody reads the answer).
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                token.cancel("deadline")
                break
            finished, _ = await asyncio.wait({task}, timeout=min(DISCONNECT_POLL_S, remaining))
            if finished:
                return task.result()
            if await request.is_disconnected():
                token.cancel("disconnected")
                break
    finally:
        if not task.done():  # on our own cancellation too: stop the worker thread as well
            token.cancel(token.reason or "cancelled")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if token.reason == "disconnected":
        raise Cancelled("disconnected")
    raise ServiceError(
        504,
        "deadline_exceeded",
        f"the request did not finish within {timeout_s:g} s (request_timeout_s); its work was stopped. "
        "Send fewer samples or steps, or split a rollout into several requests",
    )


def deadline_of(started_monotonic: float, timeout_s: float | None) -> float:
    """The deadline of a request that arrived at ``started_monotonic``; ``inf`` without a timeout."""
    return float("inf") if timeout_s is None or timeout_s <= 0 else started_monotonic + float(timeout_s)

