"""The interface every PDE problem implements: what its fields are, how inputs are sampled, how it is solved.

A PDE object is all that `surrogates-generate` needs to write a dataset: it names its variables and
their dimensions, gives the coordinates, samples inputs and solves for the targets.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from surrogates.schema import Variable
from surrogates.solvers.report import SolverReport

__all__ = ["PDE", "Coordinate", "Variable"]


@dataclass(frozen=True)
class Coordinate:
    """A 1D coordinate of the dataset (``x``, ``y``, ``time``) with its units."""

    values: np.ndarray
    units: str = "1"
    long_name: str = ""
    attrs: dict = field(default_factory=dict)


class PDE(abc.ABC):
    """Base class of PDE problems.

    Subclasses set ``name``, ``inputs`` and ``targets`` and implement the four methods below.
    All arrays carry a leading sample dimension and are float64 unless stated otherwise;
    the dataset writer stores fields as float32.
    """

    name: str
    inputs: tuple[str, ...]
    targets: tuple[str, ...]

    @abc.abstractmethod
    def variables(self) -> dict[str, Variable]:
        """Every per-sample variable written to a dataset (inputs, targets and parameters)."""

    @abc.abstractmethod
    def coords(self) -> dict[str, Coordinate]:
        """Coordinates named in the variables' dims."""

    @abc.abstractmethod
    def sample_inputs(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw ``n`` random inputs; arrays of shape ``(n, *variable.dims)``."""

    @abc.abstractmethod
    def solve(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], SolverReport]:
        """Solve for the targets of a batch of inputs (as returned by :meth:`sample_inputs`)."""

    def generate(self, n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], SolverReport]:
        """Sample ``n`` inputs and solve them; returns all variables and the solver report."""
        inputs = self.sample_inputs(n, rng)
        outputs, report = self.solve(inputs)
        return {**inputs, **outputs}, report
