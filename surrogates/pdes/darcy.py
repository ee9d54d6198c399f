"""2D Darcy flow as in the FNO paper: ``-div(a grad u) = f`` on the unit square, ``u = 0`` on the boundary.

The coefficient is a thresholded Gaussian random field: ``psi ~ N(0, 9 (-Laplacian + 9 I)^-2)`` with
Neumann boundary (``alpha = 2``, ``tau = 3``; amplitude ``tau^(alpha - 1)`` as FNO's ``GRF.m``, which does
not change the thresholded field), ``a = 12`` where ``psi >= 0`` and ``a = 3`` elsewhere;
the forcing is ``f = 1``. Fields live on ``resolution x resolution`` nodes including the boundary.
The reference solution is computed with 5-point finite differences (harmonic-mean face
coefficients) and preconditioned CG.
"""

from __future__ import annotations

import numpy as np

from surrogates.pdes.base import PDE, Coordinate, Variable
from surrogates.pdes.random_fields import gaussian_random_field
from surrogates.solvers.finite_differences import diffusion_operator, interior, with_boundary
from surrogates.solvers.report import SolverReport
from surrogates.solvers.sparse_cg import PRECONDITIONERS, solve_spd

DISCRETIZATION = "5-point finite differences, harmonic-mean face coefficients"


def solve_darcy(
    a: np.ndarray,
    forcing: float | np.ndarray = 1.0,
    rtol: float = 1e-10,
    preconditioner: str = "amg",
) -> tuple[np.ndarray, int, float]:
    """Solve ``-div(a grad u) = f`` on the unit square with ``u = 0`` on the boundary for one coefficient.

    Parameters
    ----------
    a
        Positive coefficient at the nodes, shape ``(s, s)`` (boundary included, ``h = 1 / (s - 1)``).
    forcing
        ``f``: a constant or node values of shape ``(s, s)`` (only interior values are used).
    rtol
        Relative residual tolerance of CG.
    preconditioner
        ``"amg"``, ``"ic0"``, ``"jacobi"`` or ``"none"`` (see :func:`surrogates.solvers.sparse_cg.solve_spd`).

    Returns
    -------
    u : np.ndarray
        Solution at the nodes, shape ``(s, s)``, zero on the boundary.
    iterations : int
        CG iterations.
    relative_residual : float
        ``||b - A u|| / ||b||`` of the discrete system.
    """
    a = np.asarray(a, dtype=np.float64)
    s = a.shape[0]
    A = diffusion_operator(a)
    b = interior(np.broadcast_to(np.asarray(forcing, dtype=np.float64), a.shape)).copy()
    x, iterations, residual = solve_spd(A, b, rtol=rtol, preconditioner=preconditioner)
    return with_boundary(x, s), iterations, residual


class Darcy(PDE):
    """Darcy flow with a two-valued coefficient (FNO benchmark); maps ``a (x, y)`` to ``u (x, y)``.

    Parameters
    ----------
    resolution
        Nodes per direction including the boundary (FNO's data: 421, subsampled to 85 or 141).
    a_high, a_low
        Coefficient where the random field is ``>= 0`` and ``< 0``.
    alpha, tau
        The field's covariance ``(-Laplacian + tau^2 I)^(-alpha)`` (Neumann boundary).
    forcing
        Constant right-hand side ``f``.
    rtol, preconditioner
        CG tolerance and preconditioner (``"amg"``, ``"ic0"``, ``"jacobi"``, ``"none"``).
    """

    name = "darcy"
    inputs = ("a",)
    targets = ("u",)

    def __init__(
        self,
        resolution: int = 64,
        a_high: float = 12.0,
        a_low: float = 3.0,
        alpha: float = 2.0,
        tau: float = 3.0,
        forcing: float = 1.0,
        rtol: float = 1e-10,
        preconditioner: str = "amg",
    ):
        if resolution < 3:
            raise ValueError(f"resolution must be >= 3 (one interior node), got {resolution}")
        if not (a_high > 0 and a_low > 0):
            raise ValueError("a_high and a_low must be positive")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
        self.resolution = int(resolution)
        self.a_high, self.a_low = float(a_high), float(a_low)
        self.alpha, self.tau = float(alpha), float(tau)
        self.forcing = float(forcing)
        self.rtol = float(rtol)
        self.preconditioner = preconditioner

    def variables(self) -> dict[str, Variable]:
        return {
            "a": Variable("a", ("x", "y"), "1", "diffusion coefficient"),
            "u": Variable("u", ("x", "y"), "1", "solution (pressure)"),
        }

    def coords(self) -> dict[str, Coordinate]:
        x = np.linspace(0.0, 1.0, self.resolution)
        return {"x": Coordinate(x, "1", "x"), "y": Coordinate(x.copy(), "1", "y")}

    def sample_inputs(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{"a": (n, resolution, resolution)}`` with values ``a_high`` / ``a_low``."""
        psi = gaussian_random_field(n, self.resolution, self.alpha, self.tau, rng, dim=2, boundary="neumann")
        return {"a": np.where(psi >= 0.0, self.a_high, self.a_low)}

    def solve(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], SolverReport]:
        """Solve each sample; returns ``{"u": (n, resolution, resolution)}`` (zero boundary) and the report."""
        a = np.asarray(inputs["a"], dtype=np.float64)
        if a.ndim != 3 or a.shape[1:] != (self.resolution, self.resolution):
            raise ValueError(f"a must have shape (n, {self.resolution}, {self.resolution}), got {a.shape}")
        u = np.empty_like(a)
        report = SolverReport(
            method=f"pcg+{self.preconditioner}",
            parameters={"rtol": self.rtol, "preconditioner": self.preconditioner, "discretization": DISCRETIZATION},
        )
        for i, a_i in enumerate(a):
            u[i], iterations, residual = solve_darcy(a_i, self.forcing, self.rtol, self.preconditioner)
            report.iterations.append(int(iterations))
            report.residuals.append(float(residual))
        return {"u": u}, report
