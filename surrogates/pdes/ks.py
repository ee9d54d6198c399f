"""1D Kuramoto-Sivashinsky equation (the PDE-Refiner benchmark), solved pseudo-spectrally with ETDRK4.

    u_t + u u_x + u_xx + u_xxxx = 0   on the periodic interval [0, L),

a chaotic, stiff equation: modes with wavenumber ``0 < k < 1`` grow (the linearized equation gives
``u_hat_k(t) = exp((k^2 - k^4) t) u_hat_k(0)``), the nonlinearity moves energy to high wavenumbers,
where ``-k^4`` damps it. The spatial mean is conserved exactly.

Each trajectory has its own domain length ``L ~ U[(1 - s) length, (1 + s) length]`` and its own
stored time step ``dt ~ U[(1 - s') dt, (1 + s') dt]`` (as in the data of Brandstetter et al. 2022 and
Lippe et al. 2023: ``L ~ 64 +- 10 %``), and starts from a sum of random sines

    u0(x) = sum_{i=1}^{n_waves} A_i sin(2 pi l_i x / L + phi_i),
    A_i ~ U[-amplitude, amplitude],  phi_i ~ U[0, 2 pi),  l_i uniform in {min_wavenumber, ..., max_wavenumber}.

On the normalized grid ``x_j / L = j / resolution`` this initial state does not depend on ``L``.

Discretization: Fourier pseudo-spectral in space on ``solver_resolution`` points, the nonlinear term
``-(u^2 / 2)_x`` dealiased with the 2/3 rule, ETDRK4 in time with the internal step
``dt / substeps`` (per trajectory). The first ``transient_steps`` internal steps are dropped (the
chaotic attractor is reached from the smooth initial state); from then on every ``substeps``-th
state is kept, ``n_steps`` in all, so the stored trajectory has step ``dt``. The dropped transient has
the same number of internal steps for every trajectory of a batch, so it lasts
``t0 = transient_steps * dt / substeps``, stored per trajectory.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from surrogates.pdes.base import PDE, Coordinate, Variable
from surrogates.pdes.burgers import dealiasing_mask, upsample_spectrum
from surrogates.solvers.etdrk4 import ETDRK4
from surrogates.solvers.report import SolverReport

METHOD = "fourier-pseudo-spectral+etdrk4"
MIN_SOLVER_POINTS = 256
"""Fewest solver points picked by default (4 per unit length at ``L = 64``; see :class:`KuramotoSivashinsky`)."""


def wavenumbers(length: np.ndarray, n_modes: int) -> np.ndarray:
    """Angular wavenumbers ``k_m = 2 pi m / L`` of the ``rfft`` modes ``m = 0..n_modes - 1``, shape ``(n, n_modes)``."""
    length = np.asarray(length, dtype=np.float64).reshape(-1, 1)
    return 2.0 * np.pi * np.arange(n_modes) / length


def linear_growth_rates(k: np.ndarray) -> np.ndarray:
    """``k^2 - k^4``: growth rate of the mode of wavenumber ``k`` under the linearized equation."""
    return k**2 - k**4


def sines_initial_state(
    n: int,
    resolution: int,
    rng: np.random.Generator,
    n_waves: int = 10,
    min_wavenumber: int = 1,
    max_wavenumber: int = 2,
    amplitude: float = 0.5,
) -> np.ndarray:
    """Random sums of sines on the normalized periodic grid ``x_j / L = j / resolution``, shape ``(n, resolution)``.

    ``sum_i A_i sin(2 pi l_i j / resolution + phi_i)`` with ``A_i ~ U[-amplitude, amplitude]``,
    ``phi_i ~ U[0, 2 pi)`` and integer ``l_i`` uniform in ``[min_wavenumber, max_wavenumber]`` (inclusive).
    """
    amplitudes = rng.uniform(-amplitude, amplitude, size=(n, 1, n_waves))
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(n, 1, n_waves))
    modes = rng.integers(min_wavenumber, max_wavenumber + 1, size=(n, 1, n_waves))
    grid = (np.arange(resolution) / resolution)[None, :, None]
    return np.sum(amplitudes * np.sin(2.0 * np.pi * modes * grid + phases), axis=-1)


def solve_ks(
    u0: np.ndarray,
    length: float | np.ndarray,
    dt: float | np.ndarray,
    n_steps: int,
    substeps: int = 4,
    transient_steps: int = 0,
    solver_resolution: int | None = None,
    n_contour: int = 32,
) -> np.ndarray:
    """Integrate the Kuramoto-Sivashinsky equation from ``u0`` and return ``n_steps`` states ``dt`` apart.

    Parameters
    ----------
    u0
        Initial states at ``x_j = j L / r``, shape ``(n, r)``; trigonometric interpolation carries
        them to the solver grid (exact for states with modes below ``r / 2``).
    length
        Domain length ``L``, a scalar or one per sample, shape ``(n,)``.
    dt
        Time between returned states, a scalar or one per sample, shape ``(n,)``.
    n_steps
        Number of returned states.
    substeps
        ETDRK4 steps per ``dt``: the internal step is ``dt / substeps``.
    transient_steps
        Internal steps taken before the first returned state (0: the first state is ``u0``, up to
        the dealiasing of modes at or above the solver's cut-off).
    solver_resolution
        Solver grid points, a multiple of ``r``; default ``r``.
    n_contour
        Contour points for the ETDRK4 coefficients.

    Returns
    -------
    np.ndarray
        Shape ``(n, n_steps, r)``: point values of the solver's solution at the stored points at
        times ``(transient_steps + i * substeps) * dt / substeps``, ``i = 0..n_steps - 1``.
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim != 2:
        raise ValueError(f"u0 must have shape (n, points), got {u0.shape}")
    n, r = u0.shape
    big = r if solver_resolution is None else int(solver_resolution)
    if big % r:
        raise ValueError(f"solver_resolution {big} must be a multiple of the stored resolution {r}")
    if n_steps < 1 or substeps < 1 or transient_steps < 0:
        raise ValueError("need n_steps >= 1, substeps >= 1 and transient_steps >= 0")
    length = np.broadcast_to(np.asarray(length, dtype=np.float64), (n,))
    dt = np.broadcast_to(np.asarray(dt, dtype=np.float64), (n,))
    if np.any(length <= 0) or np.any(dt <= 0):
        raise ValueError("length and dt must be positive")

    n_modes = int(dealiasing_mask(big).sum())  # 2/3 rule: the state keeps only modes below the cut-off
    k = wavenumbers(length, n_modes)
    derivative = -0.5j * k  # -(u^2 / 2)_x in Fourier space

    def nonlinear(v: np.ndarray) -> np.ndarray:
        u = fft.irfft(v, big, axis=-1)
        return derivative * fft.rfft(u * u, axis=-1)[:, :n_modes]

    stepper = ETDRK4(linear_growth_rates(k), (dt / substeps)[:, None], n_contour)
    v = upsample_spectrum(u0, big)[:, :n_modes]
    stride = big // r
    out = np.empty((n, n_steps, r))
    v = stepper.integrate(v, nonlinear, transient_steps)
    for i in range(n_steps):
        if i:
            v = stepper.integrate(v, nonlinear, substeps)
        out[:, i] = fft.irfft(v, big, axis=-1)[:, ::stride]
    return out


class KuramotoSivashinsky(PDE):
    """Kuramoto-Sivashinsky trajectories ``u (time, x)`` on per-sample domains, after a dropped transient.

    Stored per sample: ``u (time, x)``, the stored time step ``dt``, the grid spacing
    ``dx = L / resolution``, the domain length ``L`` and the time ``t0`` of the first stored state
    (the length of the dropped transient). The coordinates are normalized: ``x = j / resolution``
    (physical position ``x * L``) and ``time = i`` (physical time ``t0 + time * dt``). The
    parameters ``dt`` and ``L`` are rounded to float32 before solving, so that the stored values are
    exactly the ones the data were solved with.

    Parameters
    ----------
    resolution
        Stored grid points ``x_j = j L / resolution``.
    solver_resolution
        Solver grid points, a multiple of ``resolution``; default: the smallest multiple that is at
        least 256. At ``L ~ 64`` and 256 points the spectrum on the attractor has fallen to ~1e-9 of
        its peak at the 2/3 cut-off (mode 85), and a 512-point solve differs by ~1e-9 after 8 time
        units, far below the float32 rounding of the stored data.
    length, length_spread
        ``L ~ U[(1 - length_spread) length, (1 + length_spread) length]``.
    dt, dt_spread
        Stored time step ``~ U[(1 - dt_spread) dt, (1 + dt_spread) dt]``; ``dt_spread = 0`` fixes it.
    substeps
        Internal ETDRK4 steps per stored step. The default 16 (internal step ~0.05) keeps the error
        per stored step near 5e-6 (max norm, ``max |u| ~ 3``); 4 (step ~0.2) gives 4e-4.
    n_steps
        Stored states per trajectory.
    transient_time
        Time dropped before the first stored state, at the nominal internal step:
        ``transient_steps = round(transient_time * substeps / dt)`` internal steps for every trajectory.
    n_waves, min_wavenumber, max_wavenumber, amplitude
        Law of the initial sum of sines (see :func:`sines_initial_state`).
    """

    name = "ks"
    inputs = ("u", "dt", "dx")
    targets = ("u",)

    def __init__(
        self,
        resolution: int = 256,
        solver_resolution: int | None = None,
        length: float = 64.0,
        length_spread: float = 0.1,
        dt: float = 0.8,
        dt_spread: float = 0.1,
        substeps: int = 16,
        n_steps: int = 140,
        transient_time: float = 100.0,
        n_waves: int = 10,
        min_wavenumber: int = 1,
        max_wavenumber: int = 2,
        amplitude: float = 0.5,
        n_contour: int = 32,
    ):
        if resolution < 4:
            raise ValueError(f"resolution must be >= 4, got {resolution}")
        if solver_resolution is None:
            solver_resolution = resolution * math.ceil(MIN_SOLVER_POINTS / resolution)
        if solver_resolution % resolution:
            raise ValueError(f"solver_resolution ({solver_resolution}) must be a multiple of resolution ({resolution})")
        if not (length > 0 and dt > 0 and 0 <= length_spread < 1 and 0 <= dt_spread < 1):
            raise ValueError("need positive length and dt, and spreads in [0, 1)")
        if n_steps < 1 or substeps < 1 or transient_time < 0:
            raise ValueError("need n_steps >= 1, substeps >= 1 and transient_time >= 0")
        cutoff = (solver_resolution - 1) // 3
        if not 1 <= min_wavenumber <= max_wavenumber < min(cutoff, resolution // 2):
            raise ValueError(
                f"need 1 <= min_wavenumber <= max_wavenumber < {min(cutoff, resolution // 2)} (the initial sines "
                "must be resolved by the stored grid and survive the 2/3 dealiasing)"
            )
        if n_waves < 1 or amplitude < 0:
            raise ValueError("need n_waves >= 1 and amplitude >= 0")
        self.resolution, self.solver_resolution = int(resolution), int(solver_resolution)
        self.length, self.length_spread = float(length), float(length_spread)
        self.dt, self.dt_spread = float(dt), float(dt_spread)
        self.substeps, self.n_steps = int(substeps), int(n_steps)
        self.transient_time = float(transient_time)
        self.n_waves, self.min_wavenumber, self.max_wavenumber = int(n_waves), int(min_wavenumber), int(max_wavenumber)
        self.amplitude = float(amplitude)
        self.n_contour = int(n_contour)

    @property
    def transient_steps(self) -> int:
        """Internal steps dropped before the first stored state (the same for every trajectory)."""
        return int(round(self.transient_time * self.substeps / self.dt))

    def variables(self) -> dict[str, Variable]:
        return {
            "u": Variable("u", ("time", "x"), "1", "solution"),
            "dt": Variable("dt", (), "1", "time between stored states"),
            "dx": Variable("dx", (), "1", "grid spacing L / resolution"),
            "L": Variable("L", (), "1", "domain length"),
            "t0": Variable("t0", (), "1", "time of the first stored state (dropped transient)"),
        }

    def coords(self) -> dict[str, Coordinate]:
        return {
            "x": Coordinate(
                np.arange(self.resolution) / self.resolution, "1", "position / L (physical x = x * L)", {"periodic": 1}
            ),
            "time": Coordinate(
                np.arange(self.n_steps, dtype=np.float64), "1", "stored step index (physical time = t0 + time * dt)"
            ),
        }

    def sample_inputs(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{"u": (n, resolution) initial sums of sines, "dt", "dx", "L": (n,)}``; ``u`` is the state at
        ``t = 0``, before the transient (the stored trajectory starts at ``t0``)."""
        u0 = sines_initial_state(
            n, self.resolution, rng, self.n_waves, self.min_wavenumber, self.max_wavenumber, self.amplitude
        )
        length = self.length * rng.uniform(1.0 - self.length_spread, 1.0 + self.length_spread, size=n)
        dt = self.dt * rng.uniform(1.0 - self.dt_spread, 1.0 + self.dt_spread, size=n)
        # the stored (float32) values are the ones the data are solved with
        length = length.astype(np.float32).astype(np.float64)
        dt = dt.astype(np.float32).astype(np.float64)
        return {"u": u0, "dt": dt, "dx": length / self.resolution, "L": length}

    def solve(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], SolverReport]:
        """Integrate a batch from ``inputs["u"]`` (``(n, resolution)``) with per-sample ``L`` and ``dt``.

        Returns ``{"u": (n, n_steps, resolution), "t0": (n,)}`` and the solver report.
        """
        u0 = np.asarray(inputs["u"], dtype=np.float64)
        if u0.ndim != 2 or u0.shape[1] != self.resolution:
            raise ValueError(f"u must have shape (n, {self.resolution}), got {u0.shape}")
        n = len(u0)
        length = np.broadcast_to(np.asarray(inputs.get("L", self.length), dtype=np.float64), (n,))
        dt = np.broadcast_to(np.asarray(inputs.get("dt", self.dt), dtype=np.float64), (n,))
        u = solve_ks(
            u0, length, dt, self.n_steps, self.substeps, self.transient_steps, self.solver_resolution, self.n_contour
        )
        t0 = self.transient_steps * dt / self.substeps
        steps = self.transient_steps + (self.n_steps - 1) * self.substeps
        report = SolverReport(
            METHOD,
            parameters={
                "dt_internal_nominal": self.dt / self.substeps,
                "substeps": self.substeps,
                "transient_steps": self.transient_steps,
                "solver_resolution": self.solver_resolution,
                "dealiasing": "2/3 rule",
                "etdrk4_contour_points": self.n_contour,
            },
            iterations=[steps] * n,
        )
        return {"u": u, "t0": t0, "dt": dt, "dx": length / self.resolution, "L": length}, report
