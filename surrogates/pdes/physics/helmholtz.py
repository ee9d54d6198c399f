"""2D Helmholtz equation with the manufactured solution of the PINN literature.

    u_xx + u_yy + k^2 u = f   on (-1, 1)^2,     u = 0 on the boundary,
    u*(x, y) = sin(a1 pi x) sin(a2 pi y),       f = (k^2 - (a1^2 + a2^2) pi^2) u*.

``a1 = 1, a2 = 4, k = 1`` is the benchmark of Wang, Teng & Perdikaris (2021) on which plain PINNs
suffer from unbalanced gradients, and one of the problems of the PIG paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from surrogates.pdes.physics.base import (
    PhysicsProblem,
    Reference,
    UFunction,
    face_points,
    flatten,
    gradient,
    second_derivative,
)

__all__ = ["Helmholtz2D"]


@dataclass
class Helmholtz2D(PhysicsProblem):
    """``u_xx + u_yy + k^2 u = f`` on ``(-1, 1)^2`` with ``u* = sin(a1 pi x) sin(a2 pi y)``.

    Parameters
    ----------
    a1, a2
        Wave numbers of the manufactured solution along ``x`` and ``y`` (integers keep ``u* = 0`` on
        the boundary; other values are allowed, the boundary condition takes ``u*``'s values).
    k
        Helmholtz wave number.
    """

    a1: float = 1.0
    a2: float = 4.0
    k: float = 1.0

    name = "helmholtz"
    coordinates = ("x", "y")

    def __post_init__(self):
        self._check_fields()

    def bounds(self) -> list[tuple[float, float]]:
        return [(-1.0, 1.0), (-1.0, 1.0)]

    def exact_solution(self, points: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.a1 * math.pi * points[:, 0]) * torch.sin(self.a2 * math.pi * points[:, 1])

    def source(self, points: torch.Tensor) -> torch.Tensor:
        """``f = (k^2 - (a1^2 + a2^2) pi^2) u*``, shape ``(P,)``."""
        factor = self.k**2 - (self.a1**2 + self.a2**2) * math.pi**2
        return factor * self.exact_solution(points)

    def residual(self, u_fn: UFunction, points: torch.Tensor) -> torch.Tensor:
        u = flatten(u_fn(points))
        du = gradient(u, points)
        laplacian = second_derivative(du, points, 0) + second_derivative(du, points, 1)
        return laplacian + self.k**2 * u - self.source(points.detach())

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        box = self.bounds()
        faces = [face_points(box, column, box[column][side], n, generator) for column in (0, 1) for side in (0, 1)]
        return {"boundary": torch.cat(faces)}

    def condition_residuals(self, u_fn: UFunction, points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = points["boundary"]
        return {"boundary": flatten(u_fn(x)) - self.exact_solution(x)}

    def reference(self, resolution: int | list[int] = 101) -> Reference:
        return self._exact_reference(resolution)
