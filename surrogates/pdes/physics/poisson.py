"""2D Poisson / Darcy problem ``-div(a grad u) = f`` on the unit square with ``u = 0`` on the boundary.

The coefficient is a smooth function so that the strong-form residual exists everywhere:

- ``"smooth"``: ``a = 1 + 0.5 sin(2 pi x) sin(2 pi y)``,
- ``"inclusion"``: a smoothed disk of ``high`` in ``low`` (the ``{3, 12}`` contrast of the FNO Darcy
  data), ``a = low + (high - low) sigmoid((r0 - |x - c|) / width)``,
- ``"constant"``: ``a = 1`` (the Poisson equation).

The reference solution is the project's 5-point finite-difference discretization on a fine grid
(harmonic face averages, :func:`surrogates.solvers.finite_differences.diffusion_operator`) solved
with its preconditioned CG (:func:`surrogates.solvers.sparse_cg.solve_spd`), interpolated bicubically
onto the evaluation grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.interpolate import RectBivariateSpline

from surrogates.pdes.physics.base import PhysicsProblem, Reference, UFunction, face_points, flatten, gradient
from surrogates.solvers.finite_differences import diffusion_operator, interior, with_boundary
from surrogates.solvers.sparse_cg import solve_spd

__all__ = ["DarcyPoisson"]

MAX_REFERENCE_RESOLUTION = 2049
"""Most nodes per direction of the finite-difference reference: about 4 million unknowns (the default is 513)."""

COEFFICIENTS = ("smooth", "inclusion", "constant")


@dataclass
class DarcyPoisson(PhysicsProblem):
    """``-div(a grad u) = source`` on ``(0, 1)^2``, ``u = 0`` on the boundary (columns ``(x, y)``).

    Parameters
    ----------
    coefficient
        ``"smooth"``, ``"inclusion"`` or ``"constant"`` (see the module docstring).
    source
        Constant right-hand side ``f``.
    low, high, radius, width
        Parameters of ``"inclusion"``: values outside / inside, disk radius and transition width.
    reference_resolution
        Nodes per direction of the finite-difference reference (boundary included), 3 to
        :data:`MAX_REFERENCE_RESOLUTION`.
    """

    coefficient: str = "smooth"
    source: float = 1.0
    low: float = 3.0
    high: float = 12.0
    radius: float = 0.25
    width: float = 0.02
    reference_resolution: int = 513

    name = "poisson"
    coordinates = ("x", "y")

    def __post_init__(self):
        self._check_fields(width=(0.0, math.inf), reference_resolution=(3, MAX_REFERENCE_RESOLUTION))
        if self.width == 0:
            raise ValueError("width must be > 0, got 0.0")
        if self.coefficient not in COEFFICIENTS:
            raise ValueError(f"coefficient must be one of {COEFFICIENTS}, got {self.coefficient!r}")

    def bounds(self) -> list[tuple[float, float]]:
        return [(0.0, 1.0), (0.0, 1.0)]

    def diffusivity(self, points: torch.Tensor) -> torch.Tensor:
        """``a(x, y)`` as a differentiable torch function, ``(P, 2) -> (P,)``."""
        x, y = points[:, 0], points[:, 1]
        if self.coefficient == "smooth":
            return 1.0 + 0.5 * torch.sin(2 * math.pi * x) * torch.sin(2 * math.pi * y)
        if self.coefficient == "inclusion":
            r = torch.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
            return self.low + (self.high - self.low) * torch.sigmoid((self.radius - r) / self.width)
        return torch.ones_like(x)

    def residual(self, u_fn: UFunction, points: torch.Tensor) -> torch.Tensor:
        u = flatten(u_fn(points))
        flux = self.diffusivity(points).unsqueeze(-1) * gradient(u, points)  # a grad u, (P, 2)
        divergence = gradient(flux[:, 0], points)[:, 0] + gradient(flux[:, 1], points)[:, 1]
        return -divergence - self.source

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        box = self.bounds()
        faces = [face_points(box, column, box[column][side], n, generator) for column in (0, 1) for side in (0, 1)]
        return {"boundary": torch.cat(faces)}

    def condition_residuals(self, u_fn: UFunction, points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"boundary": flatten(u_fn(points["boundary"]))}

    def solve_reference(self, resolution: int) -> np.ndarray:
        """Finite-difference solution on ``resolution x resolution`` nodes, ``[i, j] = u(x_i, y_j)``."""
        nodes = np.linspace(0.0, 1.0, resolution)
        mesh = torch.as_tensor(np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2))
        a = self.diffusivity(mesh).reshape(resolution, resolution).numpy()
        matrix = diffusion_operator(a)
        rhs = interior(np.full((resolution, resolution), float(self.source)))
        u, _, _ = solve_spd(matrix, rhs, rtol=1e-10, preconditioner="amg")
        return with_boundary(u, resolution)

    def reference(self, resolution: int | list[int] = 101) -> Reference:
        x, y = self._grid(resolution)
        s = int(self.reference_resolution)
        nodes = np.linspace(0.0, 1.0, s)
        spline = RectBivariateSpline(nodes, nodes, self.solve_reference(s), kx=3, ky=3)
        method = f"5-point finite differences on {s}x{s} nodes, PCG (AMG) to rtol 1e-10, bicubic interpolation"
        return Reference([x, y], spline(x, y), method)
