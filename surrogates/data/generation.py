"""Write a PDE's dataset split by split and shard by shard, resuming where a previous run stopped.

Random numbers are drawn per chunk of ``chunk_size`` samples, seeded by ``(seed, split, first
sample index)``, so a dataset does not depend on how it was split into shards or jobs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from surrogates.data.schema import SCHEMA_VERSION
from surrogates.data.shards import is_complete, shard_path
from surrogates.data.writer import write_dataset

SPLITS = ("train", "val", "test")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


def shard_range(n: int, shard: int, num_shards: int, chunk_size: int) -> range:
    """Sample indices of one shard: contiguous, aligned to chunks, all shards together cover ``range(n)``."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    n_chunks = -(-n // chunk_size)
    first_chunk = shard * n_chunks // num_shards
    last_chunk = (shard + 1) * n_chunks // num_shards
    return range(min(first_chunk * chunk_size, n), min(last_chunk * chunk_size, n))


def generate_split(
    pde: Any,
    path: Path,
    split: str,
    indices: range,
    seed: int,
    chunk_size: int,
    attrs: Mapping[str, Any],
    progress: bool = True,
) -> Path:
    """Generate the samples ``indices`` of a split with ``pde`` and write them atomically to ``path``.

    Parameters
    ----------
    pde
        A :class:`surrogates.pdes.base.PDE` (duck-typed: ``generate``, ``variables``, ``coords``).
    indices
        Global sample indices of this shard within the split (chunk aligned).
    attrs
        Extra file attributes (config, shard, ...); ``pde``, ``split``, ``seed``, ``solver_report``,
        ``created``, ``schema_version``, ``inputs`` and ``targets`` are filled in here.
    """
    chunks: dict[str, list[np.ndarray]] = {}
    report = None
    bar = tqdm(total=len(indices), desc=f"{pde.name} {split} -> {path.name}", unit="sample", disable=not progress)
    for start in range(indices.start, indices.stop, chunk_size):
        count = min(chunk_size, indices.stop - start)
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS.get(split, 99), start]))
        # Solvers work on small vectors: threaded BLAS only adds overhead, and under contention from
        # parallel shard jobs it slows solves by an order of magnitude.
        with threadpool_limits(limits=1, user_api="blas"):
            fields, chunk_report = pde.generate(count, rng)
        for name, values in fields.items():
            chunks.setdefault(name, []).append(values)
        report = chunk_report if report is None else report.merged(chunk_report)
        bar.update(count)
    bar.close()
    fields = {name: np.concatenate(parts) for name, parts in chunks.items()}
    file_attrs = {
        **attrs,
        "pde": pde.name,
        "schema_version": SCHEMA_VERSION,
        "inputs": " ".join(pde.inputs),
        "targets": " ".join(pde.targets),
        "split": split,
        "seed": int(seed),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "solver_report": json.dumps(report.summary() if report is not None else {}),
    }
    return write_dataset(path, fields, pde.variables(), pde.coords(), file_attrs, overwrite=True)


def generate_dataset(
    pde: Any,
    data_dir: str | Path,
    sizes: Mapping[str, int],
    seed: int = 0,
    shard: int = 0,
    num_shards: int = 1,
    chunk_size: int = 16,
    config_yaml: str = "",
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Generate this job's shard of every split; complete shards are skipped unless ``overwrite``.

    Parameters
    ----------
    sizes
        Number of samples per split, e.g. ``{"train": 1000, "val": 100, "test": 200}``.

    Returns
    -------
    list of Path
        The shard files of this job, one per non-empty split.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split, n in sizes.items():
        if n <= 0:
            continue
        path = shard_path(data_dir, split, shard, num_shards)
        if not overwrite and is_complete(path):
            print(f"{path} is complete; skipping (overwrite=true regenerates it)")
            written.append(path)
            continue
        indices = shard_range(n, shard, num_shards, chunk_size)
        attrs = {"config": config_yaml, "shard": shard, "num_shards": num_shards, "n_total": n}
        written.append(generate_split(pde, path, split, indices, seed, chunk_size, attrs, progress))
    return written
