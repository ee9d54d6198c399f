"""1D viscous Burgers' equation as in the FNO paper, solved pseudo-spectrally with ETDRK4.

    u_t + (u^2 / 2)_x = nu u_xx   on the periodic unit interval [0, 1),   t in [0, T],

with ``u0 ~ N(0, 625 (-Laplacian + 25 I)^-2)`` (periodic GRF, ``sigma = 25, tau = 5, alpha = 2``),
``nu = 0.1`` and ``T = 1``.

Consistency between the stored grid and the solver grid: the initial state is sampled on the
*stored* grid of ``resolution`` points with modes ``|k| < resolution / 2`` only (see
:mod:`surrogates.pdes.random_fields`), so it is the restriction of a band-limited function; the
solver interpolates it exactly to ``solver_resolution`` points by zero-padding its spectrum,
integrates there, and stores point values of the fine solution at the stored grid points. Hence the
stored input is exactly the initial state that was solved, and ``u[:, 0]`` equals it.

Discretization: Fourier pseudo-spectral in space, the nonlinear term dealiased with the 2/3 rule
(modes ``|k| > (N - 1) // 3`` of ``N`` points are zeroed), ETDRK4 in time (the stiff viscous term
is integrated exactly). The time step is the largest step ``<= dt`` that divides the interval
between stored snapshots.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from surrogates.pdes.base import PDE, Coordinate, Variable
from surrogates.pdes.random_fields import gaussian_random_field
from surrogates.solvers.etdrk4 import ETDRK4
from surrogates.solvers.report import SolverReport

METHOD = "fourier-pseudo-spectral+etdrk4"


def cole_hopf_solution(x: np.ndarray, t: float, nu: float, a0: float = 2.0, a1: float = 1.0) -> np.ndarray:
    """An exact periodic solution of ``u_t + u u_x = nu u_xx`` by the Cole-Hopf transform.

    With ``phi(x, t) = a0 + a1 exp(-nu (2 pi)^2 t) cos(2 pi x)`` (a heat-equation solution,
    ``a0 > |a1|`` so that ``phi > 0``), ``u = -2 nu phi_x / phi``.

    Parameters
    ----------
    x
        Points, any shape.
    t, nu, a0, a1
        Time, viscosity and the constants of ``phi``.

    Returns
    -------
    np.ndarray
        ``u(x, t)``, shape of ``x``.
    """
    if not a0 > abs(a1):
        raise ValueError("need a0 > |a1| so that phi stays positive")
    x = np.asarray(x, dtype=np.float64)
    decay = a1 * math.exp(-nu * (2.0 * math.pi) ** 2 * t)
    phi = a0 + decay * np.cos(2.0 * np.pi * x)
    phi_x = -2.0 * np.pi * decay * np.sin(2.0 * np.pi * x)
    return -2.0 * nu * phi_x / phi


def dealiasing_mask(n_points: int) -> np.ndarray:
    """2/3-rule mask on the ``rfft`` modes ``0..n_points // 2``: keeps ``k <= (n_points - 1) // 3``."""
    return np.arange(n_points // 2 + 1) <= (n_points - 1) // 3


def upsample_spectrum(u: np.ndarray, n_points: int) -> np.ndarray:
    """``rfft`` spectrum on ``n_points`` of the trigonometric interpolant of ``u`` (shape ``(n, r)``, ``r <= n_points``).

    The interpolant is the band-limited function with modes ``|k| <= r / 2`` through the points; for
    even ``r`` the real Nyquist coefficient is split equally between ``+r/2`` and ``-r/2``.

    Returns
    -------
    np.ndarray
        Complex array of shape ``(n, n_points // 2 + 1)`` such that ``irfft(., n_points)`` samples the interpolant.
    """
    r = u.shape[-1]
    coarse = fft.rfft(u, axis=-1) * (n_points / r)
    if r % 2 == 0 and n_points > r:
        coarse[..., -1] *= 0.5
    out = np.zeros(u.shape[:-1] + (n_points // 2 + 1,), dtype=np.complex128)
    out[..., : coarse.shape[-1]] = coarse
    return out


def steps_for(interval: float, dt: float) -> int:
    """Fewest equal steps no longer than ``dt`` that cover ``interval``."""
    # the relative tolerance keeps 0.1 / 1e-3 = 100.00000000000001 at 100 steps
    return max(1, math.ceil(interval / dt * (1.0 - 1e-12)))


def solve_burgers(
    u0: np.ndarray,
    nu: float | np.ndarray,
    times: np.ndarray,
    solver_resolution: int,
    dt: float,
    n_contour: int = 32,
) -> tuple[np.ndarray, int]:
    """Integrate Burgers' equation from ``u0`` and return point values at ``times``.

    Parameters
    ----------
    u0
        Initial states at ``x_j = j / r``, shape ``(n, r)``; ``solver_resolution`` must be a multiple of ``r``.
    nu
        Viscosity, a scalar or one per sample, shape ``(n,)``.
    times
        Increasing output times, shape ``(m,)``, ``times[0] >= 0``; the state at ``t = 0`` is ``u0``.
    solver_resolution
        Points of the solver grid.
    dt
        Largest time step; each interval between output times is split into equal steps ``<= dt``.
    n_contour
        Contour points for the ETDRK4 coefficients.

    Returns
    -------
    u : np.ndarray
        Shape ``(n, m, r)``: the fine solution sampled at the stored points; ``u[:, i] = u0`` where ``times[i] == 0``.
    n_steps : int
        Time steps taken per sample.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    n, r = u0.shape
    big = int(solver_resolution)
    if big % r:
        raise ValueError(f"solver_resolution {big} must be a multiple of the stored resolution {r}")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times[0] < 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be a non-negative increasing 1D array")
    nu = np.broadcast_to(np.asarray(nu, dtype=np.float64), (n,))

    # 2/3 rule: the state keeps only the modes below the cut-off; irfft zero-pads the rest
    k = np.arange(dealiasing_mask(big).sum())
    nu_values, which = np.unique(nu, return_inverse=True)
    # one linear operator per distinct viscosity keeps the coefficient arrays small
    linear = -nu_values[:, None] * (2.0 * np.pi * k) ** 2
    derivative = -1j * np.pi * k  # -(u^2 / 2)_x in Fourier: -(i 2 pi k) / 2

    def nonlinear(v: np.ndarray) -> np.ndarray:
        u = fft.irfft(v, big, axis=-1)
        return derivative * fft.rfft(u * u, axis=-1)[:, : k.size]

    v = upsample_spectrum(u0, big)[:, : k.size]  # modes above the cut-off are not resolved
    stride = big // r
    out = np.empty((n, times.size, r))
    steppers: dict[float, ETDRK4] = {}
    t, n_steps = 0.0, 0
    for i, t_next in enumerate(times):
        if t_next == 0.0:
            out[:, i] = u0
            continue
        steps = steps_for(t_next - t, dt)
        h = (t_next - t) / steps
        key = round(h, 14)
        if key not in steppers:
            stepper = ETDRK4(linear, h, n_contour)
            steppers[key] = stepper if nu_values.size == 1 else stepper.select(which)
        v = steppers[key].integrate(v, nonlinear, steps)
        n_steps += steps
        t = float(t_next)
        out[:, i] = fft.irfft(v, big, axis=-1)[:, ::stride]
    return out, n_steps


class Burgers(PDE):
    """Viscous Burgers' equation (FNO benchmark); trajectories ``u (time, x)`` from a random ``u0``.

    Parameters
    ----------
    resolution
        Stored grid points ``x_j = j / resolution`` (endpoint excluded).
    solver_resolution
        Solver grid points; a multiple of ``resolution`` large enough that the stored modes survive
        the 2/3 dealiasing (``resolution // 2 <= (solver_resolution - 1) // 3``).
    nu
        Viscosity (stored per sample as the input ``nu``).
    final_time, n_snapshots
        Stored times ``linspace(0, final_time, n_snapshots)``.
    dt
        Largest time step (reduced to divide the interval between snapshots).
    alpha, tau, sigma
        Law of ``u0``: ``N(0, sigma^2 (-Laplacian + tau^2 I)^(-alpha))`` on the periodic interval.
    """

    name = "burgers"
    inputs = ("u", "nu")
    targets = ("u",)

    def __init__(
        self,
        resolution: int = 256,
        solver_resolution: int = 1024,
        nu: float = 0.1,
        final_time: float = 1.0,
        n_snapshots: int = 11,
        dt: float = 1e-3,
        alpha: float = 2.0,
        tau: float = 5.0,
        sigma: float = 25.0,
    ):
        if resolution < 2:
            raise ValueError(f"resolution must be >= 2, got {resolution}")
        if solver_resolution % resolution:
            raise ValueError(f"solver_resolution ({solver_resolution}) must be a multiple of resolution ({resolution})")
        if resolution // 2 > (solver_resolution - 1) // 3:
            raise ValueError(
                f"solver_resolution {solver_resolution} is too coarse for resolution {resolution}: the 2/3 dealiasing "
                "would remove modes of the stored initial state; use at least twice the resolution"
            )
        if n_snapshots < 2 or final_time <= 0 or dt <= 0 or nu <= 0:
            raise ValueError("need n_snapshots >= 2 and positive final_time, dt and nu")
        self.resolution, self.solver_resolution = int(resolution), int(solver_resolution)
        self.nu, self.final_time, self.n_snapshots, self.dt = float(nu), float(final_time), int(n_snapshots), float(dt)
        self.alpha, self.tau, self.sigma = float(alpha), float(tau), float(sigma)

    @property
    def times(self) -> np.ndarray:
        """Stored times, shape ``(n_snapshots,)``."""
        return np.linspace(0.0, self.final_time, self.n_snapshots)

    @property
    def time_step(self) -> float:
        """The step actually taken: the largest ``<= dt`` dividing ``final_time / (n_snapshots - 1)``."""
        interval = self.final_time / (self.n_snapshots - 1)
        return interval / steps_for(interval, self.dt)

    def variables(self) -> dict[str, Variable]:
        return {
            "u": Variable("u", ("time", "x"), "1", "velocity"),
            "nu": Variable("nu", (), "1", "viscosity"),
        }

    def coords(self) -> dict[str, Coordinate]:
        return {
            "x": Coordinate(np.arange(self.resolution) / self.resolution, "1", "x", {"periodic": 1}),
            "time": Coordinate(self.times, "1", "time"),
        }

    def sample_inputs(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{"u": (n, resolution) initial states (band-limited), "nu": (n,)}``."""
        u0 = gaussian_random_field(
            n, self.resolution, self.alpha, self.tau, rng, dim=1, boundary="periodic", sigma=self.sigma
        )
        return {"u": u0, "nu": np.full(n, self.nu)}

    def solve(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], SolverReport]:
        """Integrate a batch; ``inputs["u"]`` is ``(n, resolution)`` (or ``(n, n_snapshots, resolution)``, of which
        ``[:, 0]`` is used). Returns ``{"u": (n, n_snapshots, resolution)}`` with ``u[:, 0]`` the initial state."""
        u0 = np.asarray(inputs["u"], dtype=np.float64)
        if u0.ndim == 3:
            u0 = u0[:, 0]
        if u0.ndim != 2 or u0.shape[1] != self.resolution:
            raise ValueError(f"u must have shape (n, {self.resolution}), got {u0.shape}")
        nu = np.asarray(inputs.get("nu", self.nu), dtype=np.float64)
        u, n_steps = solve_burgers(u0, nu, self.times, self.solver_resolution, self.dt)
        report = SolverReport(
            METHOD,
            parameters={
                "dt": self.time_step,
                "solver_resolution": self.solver_resolution,
                "dealiasing": "2/3 rule",
                "etdrk4_contour_points": 32,
            },
            iterations=[n_steps] * len(u0),
        )
        return {"u": u}, report
