"""Diffusion with a Gaussian bump: a non-affine coefficient for the reduced basis method with EIM.

``-div(a grad u) = 1`` on the unit square, ``u = 0`` on the boundary, with

    a(x; mu) = a_0 + amplitude * exp(-|x - c|^2 / (2 w^2)),    mu = (c_x, c_y, w),

center ``c`` in ``[center_min, center_max]^2`` and width ``w`` in ``[width_min, width_max]``. The
coefficient depends on ``mu`` non-affinely, so ``A(mu)`` has no finite affine expansion: the EIM
approximates it. Since ``a >= a_0 + amplitude * exp(-d^2 / (2 w^2))`` with ``d`` the distance from
``c`` to the farthest corner of the domain's bounding box, that value is a coercivity lower bound in
the ``H^1_0`` semi-norm.
"""

from __future__ import annotations

import numpy as np

from surrogates.pdes.parametric_diffusion import ParametricDiffusionPDE
from surrogates.solvers.reduced_basis.problem import ParameterSpace


class GaussianBump(ParametricDiffusionPDE):
    """Gaussian bump coefficient with parameters ``center_x, center_y, width``.

    Parameters
    ----------
    a0, amplitude
        Background value and height of the bump (``a0 > 0``, ``amplitude >= 0``).
    center_min, center_max
        Range of both center coordinates.
    width_min, width_max
        Range of the width ``w``.
    resolution, discretization, fd_rule, mesh_path, rtol, preconditioner
        See :class:`~surrogates.solvers.reduced_basis.problem.DiffusionProblem` (finite differences
        use the harmonic face rule of the Darcy problem by default).
    """

    name = "gaussian_bump"
    long_names = {"center_x": "bump center, x", "center_y": "bump center, y", "width": "bump width"}

    def __init__(
        self,
        a0: float = 1.0,
        amplitude: float = 5.0,
        center_min: float = 0.4,
        center_max: float = 0.6,
        width_min: float = 0.2,
        width_max: float = 0.3,
        resolution: int = 64,
        discretization: str = "fd",
        fd_rule: str | None = None,
        mesh_path: str | None = None,
        rtol: float = 1e-12,
        preconditioner: str = "amg",
    ):
        super().__init__(resolution, discretization, fd_rule, mesh_path, rtol, preconditioner)
        if a0 <= 0 or amplitude < 0:
            raise ValueError(f"need a0 > 0 and amplitude >= 0, got {a0}, {amplitude}")
        if not (center_min <= center_max and 0 < width_min <= width_max):
            raise ValueError("need center_min <= center_max and 0 < width_min <= width_max")
        self.a0, self.amplitude = float(a0), float(amplitude)
        self.center_range = (float(center_min), float(center_max))
        self.width_range = (float(width_min), float(width_max))
        self.parameter_space = ParameterSpace(
            ("center_x", "center_y", "width"),
            (self.center_range[0], self.center_range[0], self.width_range[0]),
            (self.center_range[1], self.center_range[1], self.width_range[1]),
        )

    def config(self) -> dict:
        return {
            **super().config(),
            "a0": self.a0,
            "amplitude": self.amplitude,
            "center_min": self.center_range[0],
            "center_max": self.center_range[1],
            "width_min": self.width_range[0],
            "width_max": self.width_range[1],
        }

    def coefficient(self, points: np.ndarray, mus: np.ndarray) -> np.ndarray:
        points, mus = np.asarray(points), np.atleast_2d(mus)
        dx = points[None, :, 0] - mus[:, 0:1]
        dy = points[None, :, 1] - mus[:, 1:2]
        return self.a0 + self.amplitude * np.exp(-(dx**2 + dy**2) / (2.0 * mus[:, 2:3] ** 2))

    def _bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mesh_path is None:
            return np.zeros(2), np.ones(2)
        _ = self.layout  # reads the mesh
        return self._mesh_points.min(axis=0), self._mesh_points.max(axis=0)

    def coefficient_lower_bound(self, mus: np.ndarray) -> np.ndarray:
        mus = np.atleast_2d(mus)
        lo, hi = self._bounding_box()
        far_x = np.maximum(np.abs(mus[:, 0] - lo[0]), np.abs(mus[:, 0] - hi[0]))
        far_y = np.maximum(np.abs(mus[:, 1] - lo[1]), np.abs(mus[:, 1] - hi[1]))
        return self.a0 + self.amplitude * np.exp(-(far_x**2 + far_y**2) / (2.0 * mus[:, 2] ** 2))
