"""Giving freed heap memory back to the operating system between the chunks of a large request.

glibc's allocator raises its mmap threshold after large blocks are freed, so later large blocks (a
model's activations) come from the heap; with small objects freed in between (a parsed JSON body),
the heap cannot shrink and every chunk of a large request may extend it again. Measured on a 16 MiB
JSON request of 572 samples to the 64x64 FNO in chunks of 8: the resident memory grew by 336 MiB
during the model work; trimming the heap after each chunk kept it flat (the peak was the parsing's),
at a cost within the noise of the shared 2-core machine (1.8 vs 1.7 s for 64 samples). Fixing the
mmap threshold instead doubled the model's time (a page fault for every fresh temporary).
"""

from __future__ import annotations

# The helper lives in the lowest layer so that models use it too (multi-grid patch chunks).
from surrogates.nn.host_memory import release_free_memory

__all__ = ["release_free_memory"]
