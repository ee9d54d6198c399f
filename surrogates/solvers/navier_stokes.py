"""2D incompressible Navier-Stokes in vorticity form on the periodic unit square, pseudo-spectral.

    w_t + u . grad w = nu Laplacian w + f,    u = (psi_y, -psi_x),   -Laplacian psi = w,

(the formulation of the FNO paper's Navier-Stokes data). The state is the ``rfft2`` spectrum of the
vorticity on an ``n x n`` grid ``x_j = j / n``. The viscous term is integrated exactly by ETDRK4
(:mod:`surrogates.solvers.etdrk4`); the advection ``-u . grad w`` (velocity and gradient evaluated
spectrally, product in physical space) and the forcing are the explicit part, dealiased with the
2/3 rule (modes with ``|k_x| > (n - 1) // 3`` or ``|k_y| > (n - 1) // 3`` are zeroed).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft

from surrogates.solvers.etdrk4 import ETDRK4

__all__ = ["VorticitySolver", "wavenumbers", "velocity_from_vorticity", "upsample_spectrum_2d", "fno_forcing"]


def wavenumbers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers of the ``rfft2`` layout: ``k_x`` of shape ``(n, 1)``, ``k_y`` of shape ``(1, n // 2 + 1)``."""
    kx = np.fft.fftfreq(n, 1.0 / n)[:, None]
    ky = np.fft.rfftfreq(n, 1.0 / n)[None, :]
    return kx, ky


def fno_forcing(n: int, amplitude: float = 0.1) -> np.ndarray:
    """The FNO paper's forcing ``amplitude (sin(2 pi (x + y)) + cos(2 pi (x + y)))`` at ``x_j = j / n``, ``(n, n)``."""
    x = np.arange(n) / n
    s = 2.0 * np.pi * (x[:, None] + x[None, :])
    return amplitude * (np.sin(s) + np.cos(s))


def velocity_from_vorticity(w_hat: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Velocity ``(u, v) = (psi_y, -psi_x)`` on the grid from the vorticity spectrum (``rfft2``, ``(..., n, n//2+1)``)."""
    kx, ky = wavenumbers(n)
    k2 = (2.0 * np.pi) ** 2 * (kx**2 + ky**2)
    k2[0, 0] = 1.0
    psi_hat = w_hat / k2
    psi_hat[..., 0, 0] = 0.0
    u = fft.irfft2(2j * np.pi * ky * psi_hat, s=(n, n))
    v = fft.irfft2(-2j * np.pi * kx * psi_hat, s=(n, n))
    return u, v


def upsample_spectrum_2d(w: np.ndarray, n_points: int) -> np.ndarray:
    """``rfft2`` spectrum on ``n_points^2`` of the trigonometric interpolant of ``w`` (``(..., r, r)``, band-limited).

    Modes ``|k| < r / 2`` are copied; the Nyquist row/column (absent from band-limited fields) is dropped.
    """
    r = w.shape[-1]
    coarse = fft.rfft2(w) * (n_points / r) ** 2
    half = (r - 1) // 2
    out = np.zeros(w.shape[:-2] + (n_points, n_points // 2 + 1), dtype=np.complex128)
    out[..., : half + 1, : half + 1] = coarse[..., : half + 1, : half + 1]
    out[..., n_points - half :, : half + 1] = coarse[..., r - half :, : half + 1]
    return out


class VorticitySolver:
    """Time stepper for the vorticity equation on an ``n x n`` periodic grid.

    Parameters
    ----------
    n
        Grid points per direction.
    nu
        Viscosity.
    forcing
        Forcing ``f`` on the grid, ``(n, n)``, or None.
    dt
        Time step; each interval between output times is split into equal steps no longer than ``dt``.
    n_contour
        Contour points of the ETDRK4 coefficients.
    """

    def __init__(self, n: int, nu: float, forcing: np.ndarray | None = None, dt: float = 1e-3, n_contour: int = 32):
        if n < 4 or nu < 0 or dt <= 0:
            raise ValueError("need n >= 4, nu >= 0 and dt > 0")
        self.n, self.nu, self.dt, self.n_contour = int(n), float(nu), float(dt), int(n_contour)
        kx, ky = wavenumbers(self.n)
        self.kx, self.ky = kx, ky
        self.k2 = (2.0 * np.pi) ** 2 * (kx**2 + ky**2)
        cut = (self.n - 1) // 3
        self.mask = (np.abs(kx) <= cut) & (np.abs(ky) <= cut)
        self.linear = -self.nu * self.k2
        self.forcing_hat = None if forcing is None else fft.rfft2(np.asarray(forcing, dtype=np.float64)) * self.mask
        self._steppers: dict[float, ETDRK4] = {}

    def nonlinear(self, w_hat: np.ndarray) -> np.ndarray:
        """``-u . grad w + f`` in spectral space, dealiased, for spectra ``(..., n, n//2+1)``."""
        n = self.n
        u, v = velocity_from_vorticity(w_hat, n)
        w_x = fft.irfft2(2j * np.pi * self.kx * w_hat, s=(n, n))
        w_y = fft.irfft2(2j * np.pi * self.ky * w_hat, s=(n, n))
        out = -fft.rfft2(u * w_x + v * w_y) * self.mask
        if self.forcing_hat is not None:
            out = out + self.forcing_hat
        return out

    def integrate(self, w0: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, int]:
        """Vorticity at ``times`` from ``w0`` at ``t = 0``.

        Parameters
        ----------
        w0
            Initial vorticity on the grid, ``(batch, n, n)``.
        times
            Increasing output times ``>= 0``.

        Returns
        -------
        w : np.ndarray
            ``(batch, len(times), n, n)``; entries at ``t = 0`` are ``w0`` itself.
        n_steps : int
            Time steps taken.
        """
        w0 = np.asarray(w0, dtype=np.float64)
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or times[0] < 0 or np.any(np.diff(times) <= 0):
            raise ValueError("times must be a non-negative increasing 1D array")
        w_hat = fft.rfft2(w0) * self.mask
        out = np.empty((w0.shape[0], times.size, self.n, self.n))
        t, n_steps = 0.0, 0
        for i, t_next in enumerate(times):
            if t_next == 0.0:
                out[:, i] = w0
                continue
            steps = max(1, math.ceil((t_next - t) / self.dt * (1.0 - 1e-12)))
            h = (t_next - t) / steps
            key = round(h, 14)
            if key not in self._steppers:
                self._steppers[key] = ETDRK4(self.linear, h, self.n_contour)
            w_hat = self._steppers[key].integrate(w_hat, self.nonlinear, steps)
            n_steps += steps
            t = float(t_next)
            out[:, i] = fft.irfft2(w_hat, s=(self.n, self.n))
        return out, n_steps
