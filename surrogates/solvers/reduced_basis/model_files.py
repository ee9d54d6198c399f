"""The package's HDF5 model files (reduced-basis ``*.rb.h5``, power-limit ``*.logdet.h5``): written atomically
with one header (:func:`create_model_file`), opened with existence, format and version checked and files whose
datasets declare more bytes than the file can hold (decompression bombs) refused before anything is read
(:func:`open_model_file`).

The package's model files (reduced-basis ``*.rb.h5``, power-limit ``*.logdet.h5``) store their arrays
uncompressed and are read whole. A file of a few MiB can still declare gigabytes in gzip-compressed
datasets of zeros, and reading them would exhaust memory (the service loads every model file of its
folder at start-up). :func:`oversized` compares the bytes the datasets declare with the file's size
before anything is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py

MAX_EXPANSION = 8
"""Declared bytes may exceed the file's size this many times (room for compression a writer might use)..."""

SLACK_BYTES = 64 << 20
"""... plus this many bytes (small files, fill values)."""


def declared_bytes(f: h5py.File) -> int:
    """Bytes that reading every dataset of ``f`` whole would produce (from the header only)."""
    total = 0

    def visit(_: str, obj: object) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += int(obj.size or 0) * max(int(obj.dtype.itemsize), 1)

    f.visititems(visit)
    return total


def oversized(f: h5py.File, path: str | Path) -> str | None:
    """Why ``f`` (opened from ``path``) is refused, or ``None`` when its datasets fit its size."""
    size = os.path.getsize(path)
    declared = declared_bytes(f)
    limit = MAX_EXPANSION * size + SLACK_BYTES
    if declared <= limit:
        return None
    return (f"its datasets declare {declared} bytes, more than a file of {size} bytes can hold "
            f"({MAX_EXPANSION} x its size + {SLACK_BYTES >> 20} MiB); refused before reading (a decompression bomb?)")


def open_model_file(
    path: str | Path,
    error: Callable[[Path, str], Exception],
    fmt: str,
    what: str,
    supported_major: Collection[str],
    version: str,
) -> h5py.File:
    """``path`` opened for reading once it exists, is HDF5, declares no more than it holds (:func:`oversized`),
    and has the attribute ``format == fmt`` and a ``format_version`` whose major part is in ``supported_major``;
    otherwise ``error(path, why)`` is raised (``what`` names the kind of file, ``version`` the one this code writes).
    Use it as a context manager."""
    path = Path(path)
    if not path.is_file():
        raise error(path, "file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as cause:
        raise error(path, f"not a readable HDF5 file (truncated or corrupt?): {cause}") from cause
    try:
        if (why := oversized(f, path)) is not None:
            raise error(path, why)
        found = _text(f.attrs.get("format"))
        if found != fmt:
            raise error(path, f"not {what} (attribute format={found!r}, expected {fmt!r})")
        found_version = str(_text(f.attrs.get("format_version")))
        if found_version.split(".")[0] not in supported_major:
            raise error(path, f"format_version {found_version} is not supported (this code reads {version})")
    except BaseException:
        f.close()
        raise
    return f


def _text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def create_model_file(
    path: str | Path, fmt: str, version: str, kind: str, problem: Any, parameter_space: Any, eim_error: float
) -> Iterator[h5py.File]:
    """A new model file with the header both kinds share (format, versions, creation time, the problem by its
    registered name and configuration, the parameter space, the EIM error), for the caller to add its own
    attributes and datasets. Written under a temporary name and renamed to ``path`` when the block ends
    without an error; the temporary file is removed either way."""
    from surrogates import __version__ as package_version  # noqa: PLC0415 (avoid a cycle at import time)
    from surrogates.checkpoint.registry import reduced_problem_name  # the allowlist lives above this layer

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = fmt
            f.attrs["format_version"] = version
            f.attrs["kind"] = kind
            f.attrs["package_version"] = str(package_version)
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["problem_target"] = reduced_problem_name(problem)
            f.attrs["problem_config"] = json.dumps(problem.config())
            f.attrs["parameter_space"] = json.dumps(parameter_space.to_dict())
            f.attrs["eim_error"] = float(eim_error)
            yield f
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
