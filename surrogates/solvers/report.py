"""What a classical solver did, recorded per solve and summarized into dataset attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SolverReport:
    """Record of a batch of solves.

    Parameters
    ----------
    method
        Human-readable name, e.g. ``"pcg+amg"`` or ``"fourier-pseudo-spectral+etdrk4"``.
    parameters
        Settings shared by every solve (tolerance, time step, ...). Must be JSON-serializable.
    iterations
        Iterations (or time steps) of each solve, one entry per sample.
    residuals
        Final relative residual ``||b - A x|| / ||b||`` of each solve; empty for time steppers.
    """

    method: str
    parameters: dict[str, Any] = field(default_factory=dict)
    iterations: list[int] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)

    def merged(self, other: "SolverReport") -> "SolverReport":
        """Concatenate the per-solve records of two reports of the same method."""
        if other.method != self.method:
            raise ValueError(f"cannot merge reports of {self.method!r} and {other.method!r}")
        return SolverReport(
            self.method,
            {**self.parameters, **other.parameters},
            self.iterations + other.iterations,
            self.residuals + other.residuals,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-serializable summary for the dataset's ``solver_report`` attribute."""
        out: dict[str, Any] = {"method": self.method, **self.parameters, "solves": len(self.iterations)}
        if self.iterations:
            out["iterations_max"] = int(np.max(self.iterations))
            out["iterations_mean"] = float(np.mean(self.iterations))
        if self.residuals:
            out["residual_max"] = float(np.max(self.residuals))
        return out
