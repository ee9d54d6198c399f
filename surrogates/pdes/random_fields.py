"""Gaussian random fields with covariance ``sigma^2 (-Laplacian + tau^2 I)^(-alpha)``, sampled spectrally.

A field is a Karhunen-Loeve sum over the eigenfunctions ``phi_k`` of the Laplacian on the unit
interval or square,

    u(x) = sum_k sqrt(lambda_k) xi_k phi_k(x),   lambda_k = sigma^2 (mu_k + tau^2)^(-alpha),

with independent ``xi_k ~ N(0, 1)`` and ``phi_k`` orthonormal in ``L^2``:

- ``boundary="neumann"``: ``phi_k = prod_i c_{k_i} cos(pi k_i x_i)`` with ``c_0 = 1``,
  ``c_k = sqrt(2)``, ``mu_k = pi^2 |k|^2``; this is the law of the FNO paper's ``GRF.m`` (Darcy).
  The field is evaluated at the ``resolution`` nodes ``x_j = j / (resolution - 1)``, boundary
  included, with a type-I DCT; modes ``0 <= k_i <= resolution - 1`` are kept.
- ``boundary="periodic"``: Fourier modes ``exp(2 pi i k.x)``, ``mu_k = 4 pi^2 |k|^2``, evaluated at
  ``x_j = j / resolution`` (endpoint excluded); modes with ``|k_i| < resolution / 2`` are kept (the
  Nyquist mode is dropped), so the sampled grid function is the restriction of a band-limited
  function and zero-padding its spectrum interpolates it exactly to a finer grid (Burgers).

In both cases the constant mode ``k = 0`` is removed, as in the FNO generators: every sample has
zero spatial mean (and the ensemble mean is zero).
"""

from __future__ import annotations

import numpy as np
from scipy import fft

BOUNDARIES = ("neumann", "periodic")


def default_sigma(alpha: float, tau: float, dim: int) -> float:
    """The FNO generators' amplitude ``tau^(alpha - dim / 2)`` (keeps the variance of order one in ``tau``)."""
    return float(tau) ** (alpha - dim / 2)


def covariance_eigenvalues(
    resolution: int, alpha: float, tau: float, dim: int = 2, boundary: str = "neumann", sigma: float | None = None
) -> np.ndarray:
    """Eigenvalues ``lambda_k`` of the covariance for the modes kept at a resolution, zero for dropped modes.

    Parameters
    ----------
    resolution
        Grid points per direction (see the module docstring for the grids).
    alpha, tau, sigma
        Covariance ``sigma^2 (-Laplacian + tau^2 I)^(-alpha)``; ``sigma=None`` uses :func:`default_sigma`.
    dim
        Spatial dimension.
    boundary
        ``"neumann"`` or ``"periodic"``.

    Returns
    -------
    np.ndarray
        ``"neumann"``: shape ``(resolution,) * dim``, index ``k_i in [0, resolution)``.
        ``"periodic"``: shape ``(resolution,) * (dim - 1) + (resolution // 2 + 1,)``, the layout of
        ``scipy.fft.rfftn`` (wave numbers ``fftfreq`` on all axes but the last, ``rfftfreq`` on the last).
    """
    _check(resolution, dim, boundary)
    sigma = default_sigma(alpha, tau, dim) if sigma is None else float(sigma)
    if boundary == "neumann":
        axes = [np.arange(resolution)] * dim
        scale = np.pi
    else:
        axes = [np.fft.fftfreq(resolution, 1.0 / resolution)] * (dim - 1) + [np.fft.rfftfreq(resolution, 1.0 / resolution)]
        scale = 2.0 * np.pi
    grids = np.meshgrid(*axes, indexing="ij")
    k2 = sum(g**2 for g in grids)
    eig = sigma**2 * (scale**2 * k2 + tau**2) ** (-alpha)
    eig[(0,) * dim] = 0.0  # zero-mean fields: drop the constant mode
    if boundary == "periodic" and resolution % 2 == 0:
        # the Nyquist mode has no sine partner on the grid; drop it so the field stays band-limited
        eig[np.any([np.abs(g) == resolution // 2 for g in grids], axis=0)] = 0.0
    return eig


def gaussian_random_field(
    n: int,
    resolution: int,
    alpha: float,
    tau: float,
    rng: np.random.Generator,
    dim: int = 2,
    boundary: str = "neumann",
    sigma: float | None = None,
) -> np.ndarray:
    """Draw ``n`` samples of a Gaussian random field on the unit interval or square.

    Parameters
    ----------
    n
        Number of samples.
    resolution
        Grid points per direction: nodes ``j / (resolution - 1)`` for ``"neumann"``, ``j / resolution``
        for ``"periodic"``.
    alpha, tau
        Smoothness and inverse length scale of the covariance ``sigma^2 (-Laplacian + tau^2 I)^(-alpha)``.
    rng
        Source of randomness; the same seed gives the same fields.
    dim
        Spatial dimension (1 or 2; higher works too).
    boundary
        ``"neumann"`` (cosine eigenbasis, as FNO's Darcy ``GRF.m``) or ``"periodic"`` (Fourier modes,
        as FNO's Burgers initial conditions).
    sigma
        Amplitude; ``None`` uses ``tau^(alpha - dim / 2)`` like the FNO generators. Burgers' law
        ``N(0, 625 (-Laplacian + 25 I)^-2)`` is ``sigma=25, tau=5, alpha=2``.

    Returns
    -------
    np.ndarray
        Float64 array of shape ``(n,) + (resolution,) * dim``.
    """
    eig = covariance_eigenvalues(resolution, alpha, tau, dim, boundary, sigma)
    axes = tuple(range(1, dim + 1))
    if boundary == "neumann":
        return _neumann_field(rng.standard_normal((n,) + eig.shape) * np.sqrt(eig), axes)
    # Periodic: the FFT of real white noise has exactly the Hermitian symmetry a real field needs,
    # and E|W_hat_k|^2 = resolution^dim, so scaling by sqrt(lambda_k) gives E|u_hat_k|^2 = lambda_k.
    noise = rng.standard_normal((n,) + (resolution,) * dim)
    spectrum = fft.rfftn(noise, axes=axes) * np.sqrt(eig)
    return fft.irfftn(spectrum, s=(resolution,) * dim, axes=axes) * resolution ** (dim / 2)


def _neumann_field(coefficients: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Evaluate ``sum_k a_k prod_i c_{k_i} cos(pi k_i x_i)`` at the nodes, ``coefficients`` of shape ``(n, s, ...)``."""
    s = coefficients.shape[1]
    # DCT-I computes y_j = x_0 + (-1)^j x_{s-1} + 2 sum_{0<k<s-1} x_k cos(pi k j / (s-1)): fold the
    # normalization c_k and the factor 2 of the interior modes into one weight per axis.
    weight = np.full(s, np.sqrt(2.0) / 2.0)
    weight[0] = 1.0
    weight[-1] = np.sqrt(2.0)
    for axis in axes:
        shape = [1] * coefficients.ndim
        shape[axis] = s
        coefficients = coefficients * weight.reshape(shape)
    return fft.dctn(coefficients, type=1, axes=axes)


def _check(resolution: int, dim: int, boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
