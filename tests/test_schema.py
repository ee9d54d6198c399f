"""`DataSchema`: built from the dataset files, stored as plain data, read back, and its grid spacings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from surrogates.data.autoregressive import AutoregressiveDataModule
from surrogates.data.datamodule import FieldDataModule
from surrogates.schema import Coordinate, DataSchema, SchemaError, Variable

EPS32 = float(np.finfo(np.float32).eps)


def test_spacing_of_bounded_and_periodic_grids_at_other_sizes():
    # bounded: n points from 0 to 1 with both ends -> 1 / (n - 1)
    bounded = Coordinate("x", 11, min=0.0, max=1.0)
    assert bounded.spacing == pytest.approx(0.1, rel=4 * EPS32)
    assert bounded.spacing_at(21) == pytest.approx(0.05, rel=4 * EPS32)
    # periodic: n points j / n on [0, 1) -> 1 / n at every size
    periodic = Coordinate("x", 8, min=0.0, max=7 / 8, boundary="periodic")
    for n in (4, 8, 16, 256):
        assert periodic.spacing_at(n) == pytest.approx(1 / n, rel=4 * EPS32)
    assert Coordinate("t", 1, min=0.0, max=0.0).spacing is None
    with pytest.raises(SchemaError, match="boundary must be one of"):
        Coordinate("x", 4, boundary="reflecting")


def test_round_trip_through_plain_data_and_the_earlier_layout():
    schema = DataSchema(
        kind="fields", pde="burgers", inputs=("u",), targets=("u",), input_time=0, target_time=-1,
        variables={"u": Variable("u", ("time", "x"), "m/s", "velocity")},
        coords={"x": Coordinate("x", 64, "1", "x", 0.0, 63 / 64, boundary="periodic"), "time": Coordinate("time", 5, "s", "", 0.0, 1.0)},
        spatial_dims=("x",), spatial_shape=(64,), source="/data/burgers",
    )
    assert DataSchema.from_dict(schema.to_dict()) == schema
    # a format-3 file of an earlier version: stored dims with "sample", no kind, no spacing or boundary
    earlier = {
        "pde": "darcy", "inputs": ["a"], "targets": ["u"], "input_time": None, "target_time": None,
        "spatial_dims": ["x", "y"], "spatial_shape": [16, 16], "data_dir": "d",
        "variables": {"a": ["sample", "x", "y"], "u": ["sample", "x", "y"]},
        "coords": {d: {"size": 16, "units": "1", "long_name": d, "min": 0.0, "max": 1.0} for d in "xy"},
    }
    read = DataSchema.from_dict(earlier)
    assert read.kind == "fields" and read.variable("a").dims == ("x", "y") and read.boundary == "bounded"
    assert read.grid_spacing() == pytest.approx([1 / 15, 1 / 15], rel=4 * EPS32)
    pointwise = DataSchema.from_dict({"inputs": ["t", "x"], "targets": ["u"], "coordinates": ["t", "x"],
                                      "bounds": [[0, 1], [-1, 1]], "problem": {"name": "p"}, "eval_resolution": [9, 13]})
    assert pointwise.kind == "pointwise" and pointwise.bounds == {"t": (0.0, 1.0), "x": (-1.0, 1.0)}
    assert DataSchema.from_dict(pointwise.to_dict()) == pointwise


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"inputs": "a"}, "inputs must be a list of strings"),
        ({"spatial_shape": [0]}, "spatial_shape must be a list of positive integers"),
        ({"coords": {"x": {"size": 4, "min": float("nan")}}}, r"coords.x.min must be a finite number"),
        ({"coords": {"x": {"size": "4"}}}, "coords.x.size must be a non-negative integer"),
        ({"kind": "graph"}, "kind must be one of"),
        ({"coordinates": ["t"], "bounds": [[0, 1], [0, 1]]}, "bounds must be one"),
        ({"variables": {"a": "x"}}, "variables.a must be a list of strings"),
        ([1, 2], "must be a mapping"),
        # a pointwise model's reference grid: at most 10^7 points (an int counts once per coordinate)
        ({"coordinates": ["x", "y"], "bounds": [[0, 1], [0, 1]], "eval_resolution": 30000},
         "makes a grid of 900000000 points, more than 10000000"),
        ({"eval_resolution": [10**4, 10**4]}, "makes a grid of 100000000 points"),
        ({"eval_resolution": 0}, "eval_resolution must be a positive integer"),
    ],
)
def test_malformed_schemas_are_refused_naming_the_entry(raw, message):
    with pytest.raises(SchemaError, match=message):
        DataSchema.from_dict(raw)


def test_field_datamodule_schema_comes_from_the_files(darcy_dir):
    schema = FieldDataModule(darcy_dir, inputs=["a"], targets=["u"], batch_size=4).data_schema()
    assert schema.kind == "fields" and schema.pde == "darcy" and schema.spatial_dims == ("x", "y")
    assert schema.variables["u"] == Variable("u", ("x", "y"), "1", "solution (pressure)")
    import h5py

    with h5py.File(darcy_dir / "train.h5") as f:
        x = f["x"][:]
    assert schema.grid_spacing() == pytest.approx([x[1] - x[0]] * 2, rel=8 * EPS32)
    assert schema.boundary == "bounded" and schema.coords["x"].units == "1"
    assert schema.periodic_dims() == [False] * len(schema.spatial_dims)


def test_trajectory_schema_records_periodic_coordinates_and_conditioning(ks_dir):
    schema = AutoregressiveDataModule(ks_dir, conditioning=["dt", "dx"], batch_size=4).data_schema()
    assert schema.kind == "trajectory" and schema.state == ("u",) and set(schema.conditioning) >= {"dt", "dx"}
    assert schema.boundary == "periodic" and schema.periodic_dims() == [True]  # rel_h1 wraps around
    n = schema.spatial_shape[0]
    assert math.isclose(schema.grid_spacing()[0], 1 / n, rel_tol=8 * EPS32)  # x / L = j / n
