"""The generator fingerprint: what defines a generated file's content, recorded in every file.

A fingerprint is a JSON object, stored in the file attribute ``fingerprint``, with the keys

- ``schema_version``: the file format version,
- ``pde``: the resolved PDE config (the Hydra ``pde`` node; or the PDE object's plain attributes),
- ``seed``, ``sizes`` (samples of every split, zeros included), ``chunk_size``, ``num_shards``.

It leaves out what does not change the data: the output path, the time of writing and the shard
index, so every file of one dataset (all splits, all shards) carries the same fingerprint. Two
files with different fingerprints belong to different datasets and are never combined.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FINGERPRINT_ATTR = "fingerprint"
"""Name of the file attribute that holds the fingerprint (canonical JSON, sorted keys)."""

UNKNOWN = None
"""What :func:`read_fingerprint` returns for a file written before fingerprints existed."""


def make_fingerprint(
    pde_config: Mapping[str, Any],
    seed: int,
    sizes: Mapping[str, int],
    chunk_size: int,
    num_shards: int,
    schema_version: str,
) -> dict[str, Any]:
    """The fingerprint of a generated dataset as a plain dict (JSON round trip applied)."""
    fingerprint = {
        "schema_version": str(schema_version),
        "pde": _plain(pde_config),
        "seed": int(seed),
        "sizes": {str(split): int(n) for split, n in sizes.items()},
        "chunk_size": int(chunk_size),
        "num_shards": int(num_shards),
    }
    return json.loads(dumps(fingerprint))


def dumps(fingerprint: Mapping[str, Any]) -> str:
    """Canonical JSON of a fingerprint (sorted keys, no spaces): equal fingerprints give equal strings."""
    return json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))


def describe_pde(pde: Any) -> dict[str, Any]:
    """A PDE object's config when none is given: its class path and its public plain-valued attributes."""
    cls = type(pde)
    out: dict[str, Any] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
    for key, value in sorted(vars(pde).items()):
        if key.startswith("_"):
            continue
        try:
            out[key] = _plain(value)
        except TypeError:
            continue  # arrays, solvers, callables: derived state, not settings
    return out


def read_fingerprint(path: str | Path) -> dict[str, Any] | None:
    """The fingerprint stored in ``path``; ``None`` (:data:`UNKNOWN`) when the file has none.

    Raises
    ------
    OSError
        If the file cannot be opened as HDF5 (missing, truncated, not HDF5).
    """
    import h5py

    with h5py.File(path, "r") as handle:
        value = handle.attrs.get(FINGERPRINT_ATTR)
    if value is None:
        return UNKNOWN
    if isinstance(value, bytes):
        value = value.decode()
    try:
        parsed = json.loads(str(value))
    except ValueError:
        return {"unparsable": str(value)}
    return parsed if isinstance(parsed, dict) else {"unparsable": str(value)}


def differences(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    """The keys in which two fingerprints differ, one line: ``seed 0 -> 7, sizes.train 64 -> 200``."""
    if old is None and new is None:
        return "both have an unknown fingerprint"
    if old is None or new is None:
        return "unknown fingerprint (written before fingerprints existed) vs a known one"
    a, b = _flatten(old), _flatten(new)
    missing = object()
    parts = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, missing), b.get(key, missing)
        if x != y:
            parts.append(f"{key} {_show(x, missing)} -> {_show(y, missing)}")
    return ", ".join(parts) if parts else "no difference"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _show(value: Any, missing: object) -> str:
    if value is missing:
        return "(absent)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: Any) -> Any:
    """JSON-able plain data; raises TypeError for anything else."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise TypeError(f"not plain data: {type(value).__name__}")
