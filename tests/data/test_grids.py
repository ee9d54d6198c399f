"""Uniform grids: coordinates uniform up to rounding pass; stretched ones are refused, naming the coordinate."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from surrogates.data.grids import check_uniform, spacing_deviation
from surrogates.data.schema import DatasetFileError
from surrogates.data.xarray_datamodule import XarrayDataModule


@pytest.mark.parametrize(
    "values",
    [
        np.linspace(0.0, 1.0, 257),
        np.linspace(-3.0, 1e4, 1000).astype(np.float32),
        np.linspace(0.0, 1.0, 64, dtype=np.float32).astype(np.float64),  # float32 rounding kept in float64
        np.arange(256) / 256,  # periodic, cell starts
        (np.arange(50) + 0.5) / 50,  # cell centres
        np.arange(10),  # integers: exact
        np.array([2.0]),  # one point: no spacing to check
    ],
)
def test_grids_uniform_up_to_rounding_pass(values):
    deviation, allowed = spacing_deviation(values)
    assert deviation <= allowed
    check_uniform("f.h5", {"x": values}, ["x"])


@pytest.mark.parametrize(
    ("values", "steps"),
    [
        # Chebyshev points: steps from 1 - cos(pi / 16) at the ends to sin(pi / 16) in the middle
        (-np.cos(np.pi * np.arange(17) / 16), r"steps from 0.0192147 to 0.19509"),
        (np.geomspace(1.0, 2.0, 20), r"steps from 0.037155 to 0.071648"),
        (np.linspace(0.0, 1.0, 33) + np.r_[np.zeros(16), 1e-4, np.zeros(16)], r"steps from 0.03115 to 0.03135"),  # one point off by 1e-4
        (np.array([0, 1, 2, 4]), "steps from 1 to 2"),
    ],
)
def test_stretched_grids_are_refused(values, steps):
    with pytest.raises(DatasetFileError, match=rf"f.h5: coordinate 'x' is not uniformly spaced \({steps}\).*interp"):
        check_uniform("f.h5", {"x": values, "y": np.array([0.0, 1.0, 5.0])}, ["x"])
    check_uniform("f.h5", {"x": values}, ["y"])  # a dim the data does not use does not matter


def test_training_on_a_stretched_grid_is_refused_before_any_step(tmp_path):
    rng = np.random.default_rng(0)
    x = -np.cos(np.pi * np.arange(9) / 8)  # Chebyshev: denser at the ends
    a = rng.random((12, 9))
    xr.Dataset({"a": (("sample", "x"), a), "u": (("sample", "x"), a**2)}, coords={"x": x}).to_netcdf(
        tmp_path / "cheb.nc", engine="h5netcdf"
    )
    datamodule = XarrayDataModule(["a"], ["u"], path=tmp_path / "cheb.nc")
    datamodule.setup("fit")
    with pytest.raises(DatasetFileError, match=r"cheb.nc: coordinate 'x' is not uniformly spaced"):
        datamodule.data_schema()  # what every task asks for in its setup, before a step
