"""An optional bearer token guarding the service.

When the operator sets a token (``surrogates-serve`` reads it from the environment variable that
``token_env`` names), :class:`BearerAuth` answers 401 to every request without
``Authorization: Bearer <token>``, except on the open paths (``GET /health``, for load balancers and
probes). :func:`is_loopback` tells whether a bind address is reachable from this machine only; the
command line warns when it is not and no token is set.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable
from typing import Any

SCHEME_NAME = "bearerAuth"
"""Name of the security scheme in the OpenAPI document."""

_UNAUTHORIZED = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    "description": "No `Authorization: Bearer <token>` header, or a wrong token.",
}


class BearerAuth:
    """ASGI middleware: 401 with ``WWW-Authenticate: Bearer`` unless the request carries the token.

    Parameters
    ----------
    app
        The application it guards.
    token
        The expected token; compared in constant time, so that timing tells nothing about it.
    open_paths
        Paths answered without a token.
    """

    def __init__(self, app: Any, token: str, open_paths: Iterable[str] = ("/health",)):
        if not token:
            raise ValueError("the bearer token must not be empty")
        self.app = app
        self.expected = token.encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        if given is not None and hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        # RFC 6750: no credentials -> a bare challenge; wrong ones -> error="invalid_token"
        challenge = b'Bearer realm="surrogates"' + (b', error="invalid_token"' if given is not None else b"")
        detail = "a bearer token is required: send 'Authorization: Bearer <token>'" if given is None else (
            "the bearer token is wrong"
        )
        body = json.dumps({"detail": detail, "code": "unauthorized"}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge),
            ],
        })
        await send({"type": "http.response.body", "body": body})


def _bearer(scope: dict) -> bytes | None:
    """The token of the request's ``Authorization: Bearer <token>`` header, or None without one."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return b""  # credentials of another scheme count as wrong ones
    return None


def declare_bearer_security(schema: dict[str, Any], open_paths: Iterable[str] = ("/health",)) -> None:
    """Declare the bearer scheme in an OpenAPI document: required by every operation but those of
    ``open_paths``, each of which may answer 401."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The token the service was started with (the environment variable named by `token_env`).",
    }
    schema["security"] = [{SCHEME_NAME: []}]
    open_paths = set(open_paths)
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            if path in open_paths:
                operation["security"] = []  # overrides the document's requirement
            else:
                operation.setdefault("responses", {})["401"] = _UNAUTHORIZED


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) is reachable from this machine only: ``localhost`` or a loopback IP."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to any interface
        return False
