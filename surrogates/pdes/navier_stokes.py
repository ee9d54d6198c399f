"""2D incompressible Navier-Stokes in vorticity form on the periodic unit square (FNO-paper setting).

    w_t + u . grad w = nu Laplacian w + f,   div u = 0,   w = v_x - u_y,   (x, y) in [0, 1)^2, t in [0, T],

with ``f = 0.1 (sin(2 pi (x + y)) + cos(2 pi (x + y)))`` (``forcing_amplitude=0`` switches it off),
``nu = 1e-3`` and ``w0 ~ N(0, 7^3 (-Laplacian + 49 I)^(-2.5))`` (periodic, zero mean), the law that the
FNO generator's code draws (``GaussianRF(2, s, alpha=2.5, tau=7)``: amplitude ``sigma = 7^(3/2)``, so the
covariance carries ``sigma^2 = 7^3``; the paper's text writes the prefactor as ``7^(3/2)``).
Trajectories ``omega (time, x, y)`` are stored at ``n_snapshots`` equally spaced times.

The initial vorticity is sampled on the stored grid with modes ``|k| < resolution / 2``, interpolated
exactly (zero-padded spectrum) to ``refinement * resolution`` points, integrated there by
:class:`surrogates.solvers.navier_stokes.VorticitySolver` (pseudo-spectral, 2/3 dealiasing, ETDRK4),
and stored as point values at the stored grid points, so ``omega[:, 0]`` is exactly the sampled
initial state.

:class:`VorticityResidual` evaluates the residual of a trajectory on the stored grid in torch (spatial
derivatives spectral, time derivative by second-order finite differences); it is written as linear
terms plus a pointwise nonlinearity so that hard-constraint layers can apply it to basis functions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from surrogates.arguments import check_number
from surrogates.pdes.base import PDE, Coordinate, Variable
from surrogates.pdes.random_fields import gaussian_random_field
from surrogates.solvers.navier_stokes import VorticitySolver, fno_forcing, upsample_spectrum_2d
from surrogates.solvers.report import SolverReport

METHOD = "fourier-pseudo-spectral+etdrk4"

__all__ = ["NavierStokes2D", "VorticityResidual"]


class NavierStokes2D(PDE):
    """Vorticity trajectories ``omega (time, x, y)`` from Gaussian random initial vorticity.

    Parameters
    ----------
    resolution
        Stored grid points per direction, ``x_j = j / resolution``.
    refinement
        The solver grid has ``refinement * resolution`` points per direction (at least 2, so that the
        stored modes survive the 2/3 dealiasing).
    nu
        Viscosity.
    forcing_amplitude
        Amplitude of the FNO forcing (0.1 in the FNO paper; 0 for unforced flow).
    final_time, n_snapshots
        Stored times ``linspace(0, final_time, n_snapshots)``.
    dt
        Largest time step of the solver.
    alpha, tau, sigma
        Law of ``w0``: ``N(0, sigma^2 (-Laplacian + tau^2 I)^(-alpha))``; ``sigma=None`` is
        ``tau^(alpha - 1)`` (``7^1.5`` for the defaults, covariance ``7^3 (-Laplacian + 49 I)^(-2.5)``, as the FNO
        generator's code).
    """

    name = "navier_stokes"
    inputs = ("omega",)
    targets = ("omega",)

    def __init__(
        self,
        resolution: int = 32,
        refinement: int = 2,
        nu: float = 1e-3,
        forcing_amplitude: float = 0.1,
        final_time: float = 2.0,
        n_snapshots: int = 21,
        dt: float = 5e-3,
        alpha: float = 2.5,
        tau: float = 7.0,
        sigma: float | None = None,
    ):
        if resolution < 4:
            raise ValueError(f"resolution must be >= 4, got {resolution}")
        if refinement < 2:
            raise ValueError(f"refinement must be >= 2 (the 2/3 rule must keep the stored modes), got {refinement}")
        if n_snapshots < 2 or final_time <= 0 or dt <= 0 or nu < 0:
            raise ValueError("need n_snapshots >= 2, positive final_time and dt, and nu >= 0")
        self.resolution, self.refinement = int(resolution), int(refinement)
        self.nu, self.forcing_amplitude = float(nu), float(forcing_amplitude)
        self.final_time, self.n_snapshots, self.dt = float(final_time), int(n_snapshots), float(dt)
        self.alpha, self.tau = float(alpha), float(tau)
        self.sigma = float(tau) ** (alpha - 1.0) if sigma is None else float(sigma)

    @property
    def solver_resolution(self) -> int:
        return self.resolution * self.refinement

    @property
    def times(self) -> np.ndarray:
        """Stored times, ``(n_snapshots,)``."""
        return np.linspace(0.0, self.final_time, self.n_snapshots)

    def variables(self) -> dict[str, Variable]:
        return {
            "omega": Variable("omega", ("time", "x", "y"), "1", "vorticity"),
            "nu": Variable("nu", (), "1", "viscosity"),
        }

    def coords(self) -> dict[str, Coordinate]:
        x = np.arange(self.resolution) / self.resolution
        return {
            "x": Coordinate(x, "1", "x", {"periodic": 1}),
            "y": Coordinate(x.copy(), "1", "y", {"periodic": 1}),
            "time": Coordinate(self.times, "1", "time"),
        }

    def sample_inputs(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{"omega": (n, resolution, resolution) initial vorticity (band-limited, zero mean), "nu": (n,)}``."""
        w0 = gaussian_random_field(
            n, self.resolution, self.alpha, self.tau, rng, dim=2, boundary="periodic", sigma=self.sigma
        )
        return {"omega": w0, "nu": np.full(n, self.nu)}

    def solve(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], SolverReport]:
        """Integrate a batch; ``inputs["omega"]`` is ``(n, r, r)`` (or a trajectory whose ``[:, 0]`` is used)."""
        w0 = np.asarray(inputs["omega"], dtype=np.float64)
        if w0.ndim == 4:
            w0 = w0[:, 0]
        r = self.resolution
        if w0.ndim != 3 or w0.shape[1:] != (r, r):
            raise ValueError(f"omega must have shape (n, {r}, {r}), got {w0.shape}")
        big = self.solver_resolution
        forcing = fno_forcing(big, self.forcing_amplitude) if self.forcing_amplitude else None
        solver = VorticitySolver(big, self.nu, forcing, self.dt)
        w0_fine = np.fft.irfft2(upsample_spectrum_2d(w0, big), s=(big, big))
        fine, n_steps = solver.integrate(w0_fine, self.times)
        omega = fine[:, :, :: self.refinement, :: self.refinement].copy()
        omega[:, 0] = w0
        report = SolverReport(
            METHOD,
            parameters={
                "dt": self.final_time / (self.n_snapshots - 1) / max(1, math.ceil(
                    self.final_time / (self.n_snapshots - 1) / self.dt * (1.0 - 1e-12))),
                "solver_resolution": big,
                "dealiasing": "2/3 rule",
                "nu": self.nu,
                "forcing_amplitude": self.forcing_amplitude,
            },
            iterations=[n_steps] * len(w0),
        )
        return {"omega": omega, "nu": np.full(len(w0), self.nu)}, report


def _spectral_axes(n: int, length: float, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Angular wavenumbers ``2 pi k / L`` of ``rfft2`` over the last two axes; Nyquist zeroed for derivatives."""
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=dtype, device=device)
    kr = torch.fft.rfftfreq(n, 1.0 / n, dtype=dtype, device=device)
    if n % 2 == 0:
        k[n // 2] = 0.0
        kr[-1] = 0.0
    scale = 2.0 * math.pi / length
    return (scale * k)[:, None], (scale * kr)[None, :]


class VorticityResidual:
    """Residual ``w_t + u . grad w - nu Laplacian w - f`` of trajectories ``(..., time, x, y)`` in torch.

    Written as linear terms (``w_t, w_x, w_y, lap_w, u, v``: linear maps of the vorticity field) and a
    pointwise function of their values, so that for ``w = w_0 + sum_n c_n b_n`` every term is an
    affine function of the coefficients ``c``. Periodic in ``x`` and ``y``: spatial derivatives are
    spectral (Nyquist mode dropped); ``w_t`` uses second-order central differences in time (one-sided
    second-order at both ends).

    Parameters
    ----------
    final_time
        Time of the last snapshot; snapshots are equally spaced from 0.
    nu, forcing_amplitude, length
        Viscosity, FNO forcing amplitude, side of the periodic square.
    derivatives
        ``"spectral"`` (default) or ``"finite_difference"``: how ``w_x``, ``w_y`` and ``lap_w`` are taken
        (periodic second-order central differences, as the hard-constraint reference code; the velocity
        stays spectral). Finite differences keep the effect of a jump local, e.g. between the experts of
        :class:`~surrogates.models.hc_moe.HardConstraintMoE`.
    """

    term_names = ("w_t", "w_x", "w_y", "lap_w", "u", "v")
    spatial_dims = 2
    periodic = True
    zero_mean = True  # periodic vorticity has zero mean

    def __init__(
        self, final_time: float, nu: float = 1e-3, forcing_amplitude: float = 0.1, length: float = 1.0,
        derivatives: str = "spectral",
    ):
        if derivatives not in ("spectral", "finite_difference"):
            raise ValueError(f"derivatives must be 'spectral' or 'finite_difference', got {derivatives!r}")
        check_number("final_time", final_time, 0.0, low_open=True)
        check_number("length", length, 0.0, low_open=True)
        check_number("nu", nu)
        check_number("forcing_amplitude", forcing_amplitude)
        self.final_time, self.nu = float(final_time), float(nu)
        self.forcing_amplitude, self.length = float(forcing_amplitude), float(length)
        self.derivatives = derivatives

    def linear_terms(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term of ``w`` (shape ``(..., T, n, n)``), each of ``w``'s shape; linear in ``w``."""
        nt, n = w.shape[-3], w.shape[-1]
        if w.shape[-2] != n:
            raise ValueError(f"expected a square grid, got {tuple(w.shape[-2:])}")
        kx, ky = _spectral_axes(n, self.length, w.dtype, w.device)
        k2_full = (2 * math.pi / self.length) ** 2 * (
            torch.fft.fftfreq(n, 1.0 / n, dtype=w.dtype, device=w.device)[:, None] ** 2
            + torch.fft.rfftfreq(n, 1.0 / n, dtype=w.dtype, device=w.device)[None, :] ** 2
        )
        w_hat = torch.fft.rfft2(w)
        inv = torch.where(k2_full > 0, 1.0 / k2_full.clamp_min(1e-30), torch.zeros_like(k2_full))
        psi_hat = w_hat * inv

        def back(spectrum: torch.Tensor) -> torch.Tensor:
            return torch.fft.irfft2(spectrum, s=(n, n))

        dt = self.final_time / (nt - 1)
        terms = {
            "w_t": torch.gradient(w, spacing=dt, dim=-3, edge_order=2)[0],
            "u": back(1j * ky * psi_hat),
            "v": back(-1j * kx * psi_hat),
        }
        if self.derivatives == "spectral":
            terms.update(w_x=back(1j * kx * w_hat), w_y=back(1j * ky * w_hat), lap_w=back(-k2_full * w_hat))
        else:
            h = self.length / n
            east, west = w.roll(-1, dims=-2), w.roll(1, dims=-2)
            north, south = w.roll(-1, dims=-1), w.roll(1, dims=-1)
            terms.update(
                w_x=(east - west) / (2 * h), w_y=(north - south) / (2 * h),
                lap_w=(east + west + north + south - 4 * w) / h**2,
            )
        return terms

    def constant_terms(self, grid_shape: tuple[int, ...], dtype: torch.dtype, device=None) -> dict[str, torch.Tensor]:
        """Parts of the pointwise inputs that do not depend on the solution: the forcing ``f`` on the grid
        ``grid_shape = (T, n, n)`` (no term has an affine offset here)."""
        nt, n, _ = grid_shape
        return {"f": self.forcing(n, dtype, device).expand(nt, n, n)}

    def forcing(self, n: int, dtype: torch.dtype, device=None) -> torch.Tensor:
        """``f`` on the ``n x n`` grid."""
        x = torch.arange(n, dtype=dtype, device=device) * (self.length / n)
        s = 2.0 * math.pi * (x[:, None] + x[None, :])
        return self.forcing_amplitude * (torch.sin(s) + torch.cos(s))

    def pointwise(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The residual from the values of the terms and constants at the same points (any common shape)."""
        return (
            terms["w_t"] + terms["u"] * terms["w_x"] + terms["v"] * terms["w_y"]
            - self.nu * terms["lap_w"] - terms["f"]
        )

    def boundary_mask(self, grid_shape: tuple[int, ...], device=None) -> torch.Tensor | None:
        """Points whose residual always enters the constraint: none (periodic domain)."""
        return None

    def residual(self, w: torch.Tensor) -> torch.Tensor:
        """Pointwise residual of trajectories ``(..., T, n, n)``, same shape."""
        terms = self.linear_terms(w)
        for name, value in self.constant_terms(tuple(w.shape[-3:]), w.dtype, w.device).items():
            terms[name] = terms[name] + value if name in terms else value
        return self.pointwise(terms)
