"""How well a degree-``K`` polynomial approximates ``log x`` and ``1 / x`` on a spectral interval ``[a, b]``.

A matrix-power algorithm reaches ``log C`` or ``C^-1`` as the limit of a polynomial in ``C``: the
Neumann (Richardson) series of the paper of Casenave et al., with ``omega = (a + b) / 2`` and the
iteration matrix ``B = I - C / omega`` of spectral radius ``rho = (b - a) / (b + a)``,

    log C = N log(omega) - sum_{k >= 1} B^k / k,       C^-1 = (1 / omega) sum_{k >= 0} B^k,

or the Chebyshev series on ``[a, b]``, which converges faster (``1 / sigma`` per degree with
``sigma = (sqrt(b) + sqrt(a)) / (sqrt(b) - sqrt(a))`` instead of ``rho``). With ``x = (b - a) / 2 (s + t)``,
``s = (b + a) / (b - a)``, ``t = cos(phi)`` and ``s = (sigma + 1 / sigma) / 2``, both have closed-form
coefficients,

    log(s + cos phi) = log(sigma / 2) + 2 sum_{n >= 1} (-1)^(n + 1) cos(n phi) / (n sigma^n),
    1 / (s + cos phi) = (2 / (sigma - 1 / sigma)) (1 + 2 sum_{n >= 1} (-1)^n cos(n phi) / sigma^n),

so the maximum error of the series truncated after degree ``K`` on ``[a, b]`` is at most the sum of
the absolute values of the dropped coefficients (``|T_n| <= 1``). Each function below returns that
sum (a geometric tail), an upper bound that holds for every symmetric matrix with spectrum in ``[a, b]``.
"""

from __future__ import annotations

import numpy as np

SERIES = ("chebyshev", "neumann")


def _interval(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.any(~np.isfinite(a)) or np.any(~np.isfinite(b)) or np.any(a <= 0) or np.any(b < a):
        raise ValueError("the spectral interval needs finite 0 < a <= b")
    return a, b


def log_truncation_bound(a, b, degree: int, series: str = "chebyshev") -> np.ndarray:
    """Upper bound of ``max_{x in [a, b]} |log x - p_K(x)|`` for the series truncated at ``degree`` ``K``.

    Parameters
    ----------
    a, b
        Spectral interval ends, broadcastable arrays, ``0 < a <= b``.
    degree
        ``K >= 0``.
    series
        ``"chebyshev"`` or ``"neumann"`` (the power series in ``B = I - x / omega``).

    Returns
    -------
    np.ndarray
        The bound, shape of ``a`` and ``b`` broadcast.
    """
    a, b = _interval(a, b)
    K = _degree(degree)
    if series == "chebyshev":
        q = (np.sqrt(b) - np.sqrt(a)) / (np.sqrt(b) + np.sqrt(a))  # 1 / sigma
        return 2.0 * q ** (K + 1) / ((K + 1) * (1.0 - q))
    if series == "neumann":
        rho = (b - a) / (b + a)
        return rho ** (K + 1) / ((K + 1) * (1.0 - rho))
    raise ValueError(f"series must be one of {SERIES}, got {series!r}")


def inverse_truncation_bound(a, b, degree: int, series: str = "chebyshev") -> np.ndarray:
    """Upper bound of ``max_{x in [a, b]} |1 / x - p_K(x)|``; arguments as :func:`log_truncation_bound`."""
    a, b = _interval(a, b)
    K = _degree(degree)
    if series == "chebyshev":
        q = (np.sqrt(b) - np.sqrt(a)) / (np.sqrt(b) + np.sqrt(a))
        # 1 / x = (2 / (b - a)) / (s + t) and 2 / (sigma - 1 / sigma) = (b - a) / (2 sqrt(ab))
        return 2.0 * q ** (K + 1) / ((1.0 - q) * np.sqrt(a * b))
    if series == "neumann":
        rho = (b - a) / (b + a)
        return (2.0 / (a + b)) * rho ** (K + 1) / (1.0 - rho)
    raise ValueError(f"series must be one of {SERIES}, got {series!r}")


def _degree(degree) -> int:
    if int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree}")
    return int(degree)
