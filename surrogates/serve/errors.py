"""The service's error type: an HTTP status, a stable machine-readable code and a message naming the problem."""

from __future__ import annotations

from collections.abc import Iterable

SHOWN_NAMES = 20
"""Messages list at most this many names (of variables, inputs), then how many more there are."""


class ServiceError(Exception):
    """A request the service refuses, answered as ``{"detail": message, "code": code}`` with ``status``.

    Parameters
    ----------
    status
        HTTP status: 400 (malformed body), 404 (unknown model), 413 (body too large),
        415 (unsupported content type), 422 (well-formed but invalid), 429 (the model's admission limit
        is full), 500 (the model raised on the request), 503 (model unavailable).
    code
        Short stable identifier of the problem, e.g. ``"wrong_shape"`` (see ``docs/serving.md``).
    message
        What is wrong, naming the variable, the shape or the limit involved.
    headers
        Extra response headers (e.g. ``Retry-After`` of a 429).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def bad_request(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def unprocessable(code: str, message: str) -> ServiceError:
    return ServiceError(422, code, message)


def name_list(names: Iterable[str], shown: int = SHOWN_NAMES) -> str:
    """``['a', 'b']``, or the first ``shown`` names and how many more: a body of many variables or keys
    gets a short message, not one that lists them all."""
    names = list(names)
    if len(names) <= shown:
        return repr(names)
    return f"{names[:shown]!r} and {len(names) - shown} more"
