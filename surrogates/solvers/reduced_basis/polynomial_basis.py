"""Products of Chebyshev polynomials of total degree ``<= K`` in ``d`` variables on a box.

They span the polynomials of total degree ``<= K`` (as the monomials do), with values in ``[-1, 1]``
on the box, which keeps the EIM greedy on them well conditioned where monomials would not be.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np


def total_degree_exponents(dim: int, degree: int) -> np.ndarray:
    """All ``alpha`` in ``N^dim`` with ``|alpha| <= degree``, by increasing degree, shape ``(D, dim)``.

    ``D = binom(degree + dim, dim)``.
    """
    rows = []
    for k in range(degree + 1):
        for combo in combinations_with_replacement(range(dim), k):
            rows.append(np.bincount(np.asarray(combo, dtype=np.int64), minlength=dim))
    return np.array(rows, dtype=np.int64).reshape(-1, dim)


@dataclass
class ChebyshevProducts:
    """``phi_alpha(y) = prod_i T_{alpha_i}(x_i)``, ``x = 2 (y - lower) / (upper - lower) - 1``.

    Attributes
    ----------
    lower, upper : np.ndarray
        The box, shape ``(d,)``, ``upper > lower``.
    exponents : np.ndarray
        ``alpha`` as rows, shape ``(D, d)``.
    """

    lower: np.ndarray
    upper: np.ndarray
    exponents: np.ndarray

    @classmethod
    def on_box(cls, lower: np.ndarray, upper: np.ndarray, degree: int) -> "ChebyshevProducts":
        lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        if lower.shape != upper.shape or lower.ndim != 1 or not np.all(upper > lower):
            raise ValueError("the box needs upper > lower componentwise, both of shape (d,)")
        return cls(lower, upper, total_degree_exponents(len(lower), int(degree)))

    @property
    def degree(self) -> int:
        return int(self.exponents.sum(axis=1).max())

    @property
    def size(self) -> int:
        return len(self.exponents)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Values ``(B, d) -> (B, D)``."""
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        x = 2.0 * (y - self.lower) / (self.upper - self.lower) - 1.0
        table = np.empty((self.degree + 1,) + x.shape)  # T_n(x_i) by the three-term recurrence
        table[0] = 1.0
        if self.degree >= 1:
            table[1] = x
        for n in range(2, self.degree + 1):
            table[n] = 2.0 * x * table[n - 1] - table[n - 2]
        columns = np.arange(x.shape[1])
        return np.prod(table[self.exponents, :, columns], axis=1).T  # (D, d, B) -> (B, D)
