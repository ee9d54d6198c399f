"""release_free_memory returns the heap's free pages: freed blocks that glibc keeps resident leave the
resident set after it (checked in a child process, whose allocator state is its own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from surrogates.nn.host_memory import _malloc_trim, release_free_memory

CHILD = textwrap.dedent(
    """
    import ctypes, ctypes.util, json
    from pathlib import Path
    from surrogates.nn.host_memory import release_free_memory

    def rss_kib():
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1])

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: 1 MiB blocks come from the heap, as after glibc raised it
    libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD: free() itself never trims the heap's top
    size, n = 1 << 20, 64
    blocks = [libc.malloc(size) for _ in range(n + 1)]
    for b in blocks:
        ctypes.memset(b, 1, size)  # resident
    for b in blocks[:n]:           # the last one stays: the freed space is not at the top of the heap
        libc.free(b)
    before = rss_kib()
    release_free_memory()
    print(json.dumps({"before": before, "after": rss_kib()}))
    """
)


@pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_freed_heap_blocks_leave_the_resident_set():
    out = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True)
    rss = __import__("json").loads(out.stdout)
    # 64 MiB were freed but resident; trimming returns all their pages but the blocks' headers' pages
    # (one 4 KiB page per MiB at most) and the neighbouring pages that stay shared: >= 60 MiB.
    assert rss["before"] - rss["after"] >= 60 * 1024


def test_release_is_harmless_without_garbage():
    release_free_memory()
    release_free_memory()
