"""Allen-Cahn equation in one space dimension, periodic, the standard hard case for PINNs.

    u_t - eps u_xx + gamma (u^3 - u) = 0    for t in (0, 1), x in (-1, 1) periodic,
    u(0, x) = x^2 cos(pi x),

with ``eps = 1e-4`` and ``gamma = 5`` (Raissi et al. 2019; Wight & Zhao 2020). The solution forms
sharp interfaces between the stable states ``u = +-1``; there is no closed form, the reference comes
from the project's Fourier pseudo-spectral solver with ETDRK4 time stepping
(:mod:`surrogates.solvers.etdrk4`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import fft

from surrogates.pdes.physics.base import (
    PhysicsProblem,
    Reference,
    UFunction,
    face_points,
    flatten,
    gradient,
    second_derivative,
)
from surrogates.solvers.etdrk4 import ETDRK4

__all__ = ["AllenCahn", "solve_allen_cahn"]

MAX_REFERENCE_MODES = 16384
"""Most grid points of the pseudo-spectral reference (the default is 2048)."""

MAX_REFERENCE_STEPS = 10**5
"""Most ETDRK4 steps of the reference, ``t_final / reference_dt`` (the default takes 2000)."""

MAX_REFERENCE_VALUES = 2**26
"""Most values of the reference's intermediate arrays (output times or points times grid points: 512 MiB of float64)."""


def solve_allen_cahn(
    u0: np.ndarray, times: np.ndarray, eps: float, gamma: float, dt: float, length: float = 2.0
) -> np.ndarray:
    """Integrate ``u_t = eps u_xx + gamma (u - u^3)`` on a periodic grid with ETDRK4.

    Parameters
    ----------
    u0
        Initial values on ``N`` equispaced points of one period (``N`` even), shape ``(N,)``.
    times
        Increasing output times starting at 0, shape ``(n_t,)``.
    eps, gamma
        Coefficients.
    dt
        Largest time step; each interval between output times is split into equal steps <= ``dt``.
    length
        Period.

    Returns
    -------
    np.ndarray
        Shape ``(n_t, N)``: the solution at the output times on the grid of ``u0``.
    """
    n = u0.shape[-1]
    omega = 2 * np.pi * fft.rfftfreq(n, d=length / n)
    linear = -eps * omega**2 + gamma

    def nonlinear(v: np.ndarray) -> np.ndarray:
        return -gamma * fft.rfft(fft.irfft(v, n) ** 3)

    out = np.empty((len(times), n))
    out[0] = u0
    v = fft.rfft(u0)
    steppers: dict[int, ETDRK4] = {}
    for i in range(1, len(times)):
        interval = times[i] - times[i - 1]
        steps = max(1, math.ceil(interval / dt - 1e-9))
        if steps not in steppers:
            steppers[steps] = ETDRK4(linear, interval / steps)
        v = steppers[steps].integrate(v, nonlinear, steps)
        out[i] = fft.irfft(v, n)
    return out


def fourier_interpolate(u: np.ndarray, x: np.ndarray, low: float, length: float) -> np.ndarray:
    """Evaluate the trigonometric interpolant of periodic samples ``u`` (``(..., N)`` on ``low + j length / N``) at ``x``."""
    n = u.shape[-1]
    coefficients = fft.rfft(u, axis=-1) / n
    weights = np.full(coefficients.shape[-1], 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    phase = np.exp(2j * np.pi * np.outer(x - low, np.arange(coefficients.shape[-1])) / length)  # (n_x, modes)
    return np.real((coefficients * weights) @ phase.T)


@dataclass
class AllenCahn(PhysicsProblem):
    """``u_t - eps u_xx + gamma (u^3 - u) = 0``, ``u(0, x) = x^2 cos(pi x)``, periodic on ``[-1, 1]`` (columns ``(t, x)``).

    Parameters
    ----------
    eps, gamma
        Diffusion and reaction coefficients.
    t_final
        End of the time interval.
    reference_modes
        Grid points of the pseudo-spectral reference solver (the default agrees with twice the points
        and half the step to a relative L2 difference of about 1e-6; the kink of ``u0`` at ``x = +-1``
        limits the accuracy at early times).
    reference_dt
        Largest ETDRK4 step of the reference solver.

    ``t_final`` and ``reference_dt`` are positive; the reference takes at most :data:`MAX_REFERENCE_STEPS`
    steps (``t_final / reference_dt``) on an even number of at most :data:`MAX_REFERENCE_MODES` points.
    """

    eps: float = 1e-4
    gamma: float = 5.0
    t_final: float = 1.0
    reference_modes: int = 2048
    reference_dt: float = 5e-4

    name = "allen_cahn"
    coordinates = ("t", "x")

    def __post_init__(self):
        self._check_fields(t_final=(0.0, math.inf), reference_dt=(0.0, math.inf), reference_modes=(16, MAX_REFERENCE_MODES))
        if self.t_final == 0 or self.reference_dt == 0 or self.reference_modes % 2:
            raise ValueError(f"t_final and reference_dt must be > 0 and reference_modes even, got {self.t_final}, "
                             f"{self.reference_dt} and {self.reference_modes}")
        if self.t_final / self.reference_dt > MAX_REFERENCE_STEPS:
            raise ValueError(f"t_final / reference_dt = {self.t_final / self.reference_dt:g} reference steps, more than "
                             f"{MAX_REFERENCE_STEPS}")

    def bounds(self) -> list[tuple[float, float]]:
        return [(0.0, self.t_final), (-1.0, 1.0)]

    @staticmethod
    def initial_condition(x):
        """``u0(x) = x^2 cos(pi x)`` (numpy arrays or torch tensors)."""
        cos = torch.cos if isinstance(x, torch.Tensor) else np.cos
        return x**2 * cos(math.pi * x)

    def residual(self, u_fn: UFunction, points: torch.Tensor) -> torch.Tensor:
        u = flatten(u_fn(points))
        du = gradient(u, points)
        u_xx = second_derivative(du, points, 1)
        return du[:, 0] - self.eps * u_xx + self.gamma * (u**3 - u)

    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        box = self.bounds()
        # periodic pairs: points on x = -1; the matching points on x = +1 are built in condition_residuals
        return {"initial": face_points(box, 0, box[0][0], n, generator), "periodic": face_points(box, 1, -1.0, n, generator)}

    def condition_residuals(self, u_fn: UFunction, points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        initial = points["initial"]
        left = points["periodic"].detach()
        right = left.clone()
        right[:, 1] = 1.0
        pair = torch.cat([left, right]).requires_grad_(True)
        u = flatten(u_fn(pair))
        u_x = gradient(u, pair)[:, 1]
        m = left.shape[0]
        return {
            "initial": flatten(u_fn(initial)) - self.initial_condition(initial[:, 1]),
            "periodic": torch.cat([u[:m] - u[m:], u_x[:m] - u_x[m:]]),
        }

    def reference(self, resolution: int | list[int] = 101) -> Reference:
        times, x = self._grid(resolution)
        n = int(self.reference_modes)
        if max(len(times), len(x)) * n > MAX_REFERENCE_VALUES:  # the solution at every output time, the interpolation
            raise ValueError(f"a {len(times)} x {len(x)} reference on {n} points needs more than {MAX_REFERENCE_VALUES} values")
        grid = -1.0 + 2.0 * np.arange(n) / n
        solution = solve_allen_cahn(self.initial_condition(grid), times, self.eps, self.gamma, self.reference_dt)
        values = fourier_interpolate(solution, x, -1.0, 2.0)
        method = f"Fourier pseudo-spectral, {n} points, ETDRK4 with dt <= {self.reference_dt:g}"
        return Reference([times, x], values, method)
