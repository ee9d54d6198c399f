"""Giving the heap's freed memory back to the operating system.

glibc's allocator raises its mmap threshold (up to 32 MiB) as large blocks are freed, so later blocks
of that size come from the heap, and freed heap blocks stay resident for reuse. A computation that
allocates and frees the same few-MiB temporaries over and over (the chunks of a large request, the
patch chunks of a multi-grid model) thus keeps its resident set near the sum of what it touched, not
near what is alive. ``malloc_trim(0)`` returns the free pages of every arena (``madvise``), so after it
the resident set follows the live memory again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["release_free_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only; musl and others have none
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``); a no-op where it is unavailable."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
