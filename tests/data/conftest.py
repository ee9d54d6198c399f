"""Tiny dataset files written with the data layer's own writer (no PDE solves, no downloads)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from surrogates.data.shards import shard_path
from surrogates.data.writer import write_dataset


@dataclass(frozen=True)
class Var:
    """Duck-typed stand-in for surrogates.pdes.base.Variable (the data layer does not import pdes)."""

    dims: tuple[str, ...]
    units: str = "1"
    long_name: str = ""


@dataclass(frozen=True)
class Coord:
    """Duck-typed stand-in for surrogates.pdes.base.Coordinate."""

    values: np.ndarray
    units: str = "1"
    long_name: str = ""
    attrs: dict = field(default_factory=dict)


CONFIG = {"pde": {"_target_": "tiny.Pde", "resolution": 8}, "seed": 3}
REPORT = {"method": "cg", "rtol": 1e-10, "solves": 4}


def base_attrs(inputs: str, targets: str, **extra) -> dict:
    return {
        "pde": "tiny",
        "inputs": inputs,
        "targets": targets,
        "config": yaml.safe_dump(CONFIG),
        "solver_report": json.dumps(REPORT),
        "seed": 3,
        **extra,
    }


def stationary(n: int, nx: int = 8, ny: int = 6, offset: float = 0.0, seed: int = 0):
    """(fields, variables, coords, attrs) of a 2D problem a (sample, x, y) -> u (sample, x, y)."""
    rng = np.random.default_rng(seed)
    fields = {
        "a": rng.normal(offset + 2.0, 0.5, (n, nx, ny)),
        "u": rng.normal(offset - 1.0, 3.0, (n, nx, ny)),
    }
    variables = {"a": Var(("x", "y"), "m2/s", "coefficient"), "u": Var(("x", "y"), "Pa", "pressure")}
    coords = {
        "x": Coord(np.linspace(0, 1, nx), "m", "x position"),
        "y": Coord(np.linspace(0, 2, ny), "m", "", {"periodic": 1}),
    }
    return fields, variables, coords, base_attrs("a", "u")


def time_dependent(n: int, nt: int = 3, nx: int = 16, seed: int = 0):
    """(fields, variables, coords, attrs) of a 1D problem u (sample, time, x) with nu (sample,)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0.0, 1.0, (n, nt, nx))
    u[:, 0] += 10.0  # first and last snapshots differ clearly
    fields = {"u": u, "nu": rng.uniform(0.01, 0.1, n)}
    variables = {"u": Var(("time", "x"), "m/s", "velocity"), "nu": Var((), "m2/s", "viscosity")}
    coords = {"time": Coord(np.linspace(0, 1, nt), "s", "time"), "x": Coord(np.arange(nx) / nx, "m")}
    return fields, variables, coords, base_attrs("u nu", "u")


@pytest.fixture
def darcy_like(tmp_path) -> Path:
    """A 2D dataset folder; val/test come from other distributions than train on purpose."""
    root = tmp_path / "darcy_like"
    for split, n, offset, seed in [("train", 10, 0.0, 0), ("val", 4, 50.0, 1), ("test", 6, -30.0, 2)]:
        fields, variables, coords, attrs = stationary(n, offset=offset, seed=seed)
        write_dataset(shard_path(root, split), fields, variables, coords, {**attrs, "split": split})
    return root


@pytest.fixture
def burgers_like(tmp_path) -> Path:
    """A 1D time-dependent dataset folder with train and test splits."""
    root = tmp_path / "burgers_like"
    for split, n, seed in [("train", 8, 0), ("test", 4, 1)]:
        fields, variables, coords, attrs = time_dependent(n, seed=seed)
        write_dataset(shard_path(root, split), fields, variables, coords, {**attrs, "split": split})
    return root
