"""Shared by the serving tools (``load_test_serve.py``, ``soak_serve.py``): waiting for a started server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_for_health(
    url: str, process: subprocess.Popen, timeout: float, name: str = "the server", detail: Callable[[], str] = str
) -> None:
    """Poll ``<url>/health`` every 0.5 s until it answers 200.

    Raises ``RuntimeError`` when ``process`` exits first or ``timeout`` seconds pass; ``detail()`` (e.g. the
    last line of the server's log) ends the message.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {detail()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} did not start in {timeout:.0f} s: {detail()}")
