"""Progress bars that redraw in place on a terminal and print whole lines, now and then, elsewhere.

tqdm redraws its bar with carriage returns at up to ten updates a second whatever its output is: in a log
file (``surrogates-generate ... > gen.log 2>&1``, a batch job's output) that makes one line of thousands of
carriage-return-separated states. When stderr is not a terminal, :func:`progress_bar` writes each state as
its own line, at most one every :data:`LOG_INTERVAL_S` seconds (plus the first and the last).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = ["LOG_INTERVAL_S", "LineStream", "progress_bar"]

LOG_INTERVAL_S = 30.0
"""Seconds between two progress lines when stderr is not a terminal."""


class LineStream:
    """A text stream for tqdm that turns its in-place redraws (``\\r<state>``) into one line per state."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(**kwargs: Any) -> tqdm:
    """``tqdm(**kwargs)``: as is on a terminal or in a notebook, line-based and every 30 s otherwise."""
    in_notebook = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)  # a widget, not text
    if not in_notebook and "file" not in kwargs and not _is_terminal(sys.stderr):
        kwargs["file"] = LineStream(sys.stderr)
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(**kwargs)
