"""The limits of decoding a request body: counts of a NetCDF header's items (413) and the request's deadline (504)."""

from __future__ import annotations

import time

from surrogates.serve.errors import ServiceError

MAX_VARIABLES = 1000
"""Default of ``max_variables``: most variables of a NetCDF body (of a NetCDF-4 body: objects in its root group)."""

MAX_ATTRIBUTES = 1000
"""Default of ``max_attributes``: most attributes read from a NetCDF body: those of the variables a request reads
(NetCDF-4: xarray reads each in about 0.4 ms), or all of them (NetCDF-3: scipy parses every one, about 10 us each)."""

MAX_CHUNKS = 1 << 16
"""Default of ``max_chunks``: most HDF5 chunks that reading a NetCDF body's variables may touch. HDF5 spends
about 15 us and 4 KiB of bookkeeping on every chunk it reads, however small the chunk (measured: 65536 chunks
of one value, about 1 s and 240 MiB)."""

CHUNK_BOOKKEEPING = 4096
"""Bytes HDF5 holds per chunk while it reads a chunked variable (measured: about 3.8 KiB, whatever the chunk's
size), counted in the decoded bytes with the chunks' data."""


def check_count(count: int, limit: int, what: str, setting: str = "max_variables") -> None:
    """413 ``too_many_<setting>`` when a NetCDF body holds more than ``limit`` of ``what``."""
    if count > limit:
        raise ServiceError(
            413, f"too_many_{setting.removeprefix('max_')}", f"the NetCDF body holds {count} {what}; the limit is {limit} ({setting})"
        )


def check_deadline(deadline: float, timeout_s: float | None) -> None:
    """504 ``deadline_exceeded`` once ``time.monotonic()`` is past ``deadline``, while a body is decoded."""
    if time.monotonic() > deadline:
        raise ServiceError(
            504, "deadline_exceeded",
            f"the request did not finish within {timeout_s or 0:g} s (request_timeout_s); decoding its body was stopped",
        )
