"""Nonlinear Klein-Gordon equation in one space dimension with a manufactured solution.

    u_tt + alpha u_xx + beta u + gamma u^3 = f    for (t, x) in (0, 1) x (0, 1),
    u*(t, x) = x cos(5 pi t) + (x t)^3,

with ``alpha = -1, beta = 0, gamma = 1`` (Wang, Teng & Perdikaris 2021). The initial conditions
``u(0, x) = x``, ``u_t(0, x) = 0`` and the Dirichlet values at ``x = 0, 1`` are taken from ``u*``.
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

__all__ = ["KleinGordon"]


@dataclass
class KleinGordon(PhysicsProblem):
    """``u_tt + alpha u_xx + beta u + gamma u^3 = f`` on ``(0, 1)^2`` (columns ``(t, x)``).

    Parameters
    ----------
    alpha, beta, gamma
        Coefficients of the equation; ``f`` follows from the manufactured ``u*``.
    """

    alpha: float = -1.0
    beta: float = 0.0
    gamma: float = 1.0

    name = "klein_gordon"
    coordinates = ("t", "x")

    def __post_init__(self):
        self._check_fields()

    def bounds(self) -> list[tuple[float, float]]:
        return [(0.0, 1.0), (0.0, 1.0)]

    def exact_solution(self, points: torch.Tensor) -> torch.Tensor:
        t, x = points[:, 0], points[:, 1]
        return x * torch.cos(5 * math.pi * t) + (x * t) ** 3

    def source(self, points: torch.Tensor) -> torch.Tensor:
        """``f`` of the manufactured solution, from its closed-form derivatives; shape ``(P,)``."""
        t, x = points[:, 0], points[:, 1]
        u = self.exact_solution(points)
        u_tt = -25 * math.pi**2 * x * torch.cos(5 * math.pi * t) + 6 * t * x**3
        u_xx = 6 * x * t**3
        return u_tt + self.alpha * u_xx + self.beta * u + self.gamma * u**3

    def residual(self, u_fn: UFunction, points: torch.Tensor) -> torch.Tensor:
        u = flatten(u_fn(points))
        du = gradient(u, points)
        u_tt, u_xx = second_derivative(du, points, 0), second_derivative(du, points, 1)
        return u_tt + self.alpha * u_xx + self.beta * u + self.gamma * u**3 - self.source(points.detach())

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        box = self.bounds()
        initial = face_points(box, 0, box[0][0], n, generator)
        boundary = torch.cat([face_points(box, 1, box[1][side], n, generator) for side in (0, 1)])
        return {"initial": initial, "boundary": boundary}

    def condition_residuals(self, u_fn: UFunction, points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        initial = points["initial"].detach().requires_grad_(True)
        u0 = flatten(u_fn(initial))
        u0_t = gradient(u0, initial)[:, 0]
        boundary = points["boundary"]
        # u*_t(0, x) = 0
        return {
            "initial": torch.cat([u0 - self.exact_solution(initial.detach()), u0_t]),
            "boundary": flatten(u_fn(boundary)) - self.exact_solution(boundary),
        }

    def reference(self, resolution: int | list[int] = 101) -> Reference:
        return self._exact_reference(resolution)
