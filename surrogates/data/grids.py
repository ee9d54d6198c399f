"""Uniform grids: what the models and the grid spacings of the data schema assume.

The data schema records each coordinate by its extent and size (:class:`~surrogates.schema.Coordinate`: the
spacing is ``(max - min) / (size - 1)``), and the grid models (FFT-based operators, finite differences in
the H1 metric and in physics losses) assume points at that spacing. A file whose spatial coordinate is
stretched (a Chebyshev or graded mesh) would train and score against the wrong spacings without a word,
so :func:`check_uniform` refuses it, naming the coordinate and its smallest and largest steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from surrogates.data.schema import DatasetFileError

__all__ = ["check_uniform", "spacing_deviation"]

ROUNDING_STEPS = 8
"""A step may differ from the mean step by this many units of round-off of the largest coordinate value."""


def spacing_deviation(values: np.ndarray) -> tuple[float, float]:
    """``(largest |step - mean step|, what rounding allows)`` of a 1D coordinate ``values`` (``(n,)``).

    Each value carries a rounding error of at most half an ulp of its magnitude, so a step of a uniform grid is
    off by at most one ulp of the largest value; :data:`ROUNDING_STEPS` of those are allowed. The ulp is
    float32's at least, whatever the stored dtype: coordinates computed in float32 and stored as float64 (as
    imports and other tools write them) keep float32's rounding.
    """
    values = np.asarray(values)
    eps = max(float(np.finfo(values.dtype).eps), float(np.finfo(np.float32).eps)) if values.dtype.kind == "f" else 0.0
    as_float = values.astype(np.float64)
    steps = np.diff(as_float)
    if steps.size < 2:
        return 0.0, 0.0
    mean = (as_float[-1] - as_float[0]) / steps.size
    allowed = ROUNDING_STEPS * eps * float(np.abs(as_float).max())
    return float(np.abs(steps - mean).max()), allowed


def check_uniform(path: str | Path, coords: Mapping[str, np.ndarray], dims: Iterable[str]) -> None:
    """Refuse a file whose coordinate of one of ``dims`` is not uniformly spaced.

    Parameters
    ----------
    path
        The file, for the message.
    coords
        Coordinate values by name (``(n,)`` each); dims without a coordinate are index grids (uniform).
    dims
        The dims the data schema records spacings for (the spatial dims of the variables used).

    Raises
    ------
    DatasetFileError
        Naming the coordinate, its smallest and largest steps and what to do.
    """
    for dim in dims:
        if dim not in coords:
            continue
        values = np.asarray(coords[dim])
        deviation, allowed = spacing_deviation(values)
        if deviation > allowed:
            steps = np.diff(values.astype(np.float64))
            raise DatasetFileError(
                path, f"coordinate {dim!r} is not uniformly spaced (steps from {steps.min():.6g} to {steps.max():.6g}): "
                "the grid models and the spacings the data schema records (H1 metric, physics losses) assume a "
                f"uniform grid; interpolate the data onto one first (e.g. ds.interp({dim}=np.linspace(lo, hi, n)))"
            )
