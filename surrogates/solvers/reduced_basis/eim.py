"""Empirical interpolation (EIM): greedy selection of magic points, for functions, vectors and matrices.

Given samples ``g(mu_1), ..., g(mu_n)`` of a parameter-dependent vector (a function at points, the
entries of an assembled matrix), the greedy algorithm of Barrault, Maday, Nguyen and Patera picks,
term after term, the sample worst approximated in the maximum norm and, in its interpolation error
``r``, the entry ``x_m = argmax |r|`` (the *magic point*); the new basis vector is ``q_m = r / r(x_m)``.
Since ``r`` vanishes at the previous magic points, the interpolation matrix ``B[l, m] = q_m(x_l)`` is
lower triangular with unit diagonal, and the interpolant of any ``g`` is

    I_M[g] = sum_m theta_m q_m,     B theta = (g(x_1), ..., g(x_M)),

computed by forward substitution from ``M`` entries of ``g`` only. Every ``q_m`` is a combination of
the selected samples, so the same approximation reads ``I_M[g] = sum_m beta_m g(mu_m)`` with
``beta = C theta``: for a matrix, ``A(mu) ~ sum_m beta_m(mu) A(mu_m)`` is assembled from the
matrices at the selected parameters and the entries of ``A(mu)`` at the magic points, which is the
nonintrusive EIM of Casenave et al.

An affine ``g(mu) = sum_{q <= Q} theta_q(mu) g_q`` spans a ``Q``-dimensional space, so the greedy
reproduces it exactly (to round-off) with ``Q`` terms and stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import solve_triangular


@dataclass
class EIMBasis:
    """Result of :func:`eim_greedy` (``M`` terms on vectors of length ``n``).

    Attributes
    ----------
    basis : np.ndarray
        Collateral basis ``q_m`` as rows, shape ``(M, n)``; ``q_m`` is 1 at its magic point.
    magic : np.ndarray
        Magic points (entry indices), shape ``(M,)``, int64.
    interpolation_matrix : np.ndarray
        ``B[l, m] = q_m(x_l)``, shape ``(M, M)``: lower triangular, unit diagonal.
    combination : np.ndarray
        ``C``, shape ``(M, M)``: ``q_m = sum_k C[k, m] g(mu_{selected_k})``.
    selected : np.ndarray
        Index of the sample chosen at each step, shape ``(M,)``.
    errors : np.ndarray
        Maximum interpolation error over the samples (maximum norm) with ``0, 1, ..., M`` terms,
        shape ``(M + 1,)``.
    """

    basis: np.ndarray
    magic: np.ndarray
    interpolation_matrix: np.ndarray
    combination: np.ndarray
    selected: np.ndarray
    errors: np.ndarray = field(default_factory=lambda: np.zeros(1))

    @property
    def size(self) -> int:
        return len(self.magic)

    def coefficients(self, values: np.ndarray) -> np.ndarray:
        """``theta`` from the values at the magic points: ``(..., M) -> (..., M)`` (forward substitution)."""
        values = np.asarray(values, dtype=np.float64)
        if self.size == 0:
            return np.zeros(values.shape)
        flat = values.reshape(-1, self.size).T
        theta = solve_triangular(self.interpolation_matrix, flat, lower=True, unit_diagonal=True, check_finite=False)
        return theta.T.reshape(values.shape)

    def weights(self, values: np.ndarray) -> np.ndarray:
        """``beta`` with ``I_M[g] = sum_m beta_m g(mu_m)``, ``(..., M) -> (..., M)``."""
        return self.coefficients(values) @ self.combination.T

    def interpolate(self, values: np.ndarray) -> np.ndarray:
        """The interpolant ``I_M[g]`` from the values at the magic points: ``(..., M) -> (..., n)``."""
        return self.coefficients(values) @ self.basis

    def truncated(self, size: int) -> "EIMBasis":
        """The first ``size`` terms (the greedy is hierarchical)."""
        return EIMBasis(
            self.basis[:size],
            self.magic[:size],
            self.interpolation_matrix[:size, :size],
            self.combination[:size, :size],
            self.selected[:size],
            self.errors[: size + 1],
        )


def eim_greedy(
    samples: np.ndarray,
    max_terms: int | None = None,
    rtol: float = 1e-12,
    atol: float = 0.0,
) -> EIMBasis:
    """Greedy EIM on a set of sampled vectors.

    Parameters
    ----------
    samples
        ``g(mu_i)`` as rows, shape ``(n_samples, n)``. Not modified.
    max_terms
        Largest number of terms ``M`` (default: no limit besides the sample count).
    rtol, atol
        Stop when the largest error (maximum norm) is ``<= max(atol, rtol * largest sample norm)``.

    Returns
    -------
    EIMBasis
    """
    residual = np.array(samples, dtype=np.float64, copy=True)
    if residual.ndim != 2 or residual.shape[0] == 0:
        raise ValueError(f"samples must have shape (n_samples, n) with n_samples > 0, got {residual.shape}")
    n_samples, n = residual.shape
    limit = n_samples if max_terms is None else min(int(max_terms), n_samples, n)
    errors = np.abs(residual).max(axis=1)
    tolerance = max(atol, rtol * float(errors.max()))
    basis, magic, selected, history = [], [], [], [float(errors.max())]
    combination = np.zeros((limit, limit))
    interpolation = np.zeros((limit, limit))  # B[l, m] = q_m(x_l), filled row and column as terms come
    for m in range(limit):
        worst = int(np.argmax(errors))
        if errors[worst] <= tolerance or errors[worst] == 0.0:
            break
        r = residual[worst]
        point = int(np.argmax(np.abs(r)))
        if point in magic:  # cannot happen in exact arithmetic (r vanishes at previous points)
            break
        # q_m = (g(mu_worst) - sum_{l<m} theta_l q_l) / r(x_m), theta = B^-1 g(mu_worst)(x_<m)
        theta = (
            solve_triangular(interpolation[:m, :m], samples[worst, magic], lower=True, unit_diagonal=True)
            if magic
            else np.zeros(0)
        )
        combination[m, m] = 1.0
        combination[:m, m] = -combination[:m, :m] @ theta
        combination[:, m] /= r[point]
        q = r / r[point]
        basis.append(q)
        magic.append(point)
        interpolation[m, : m + 1] = [b[point] for b in basis]
        selected.append(worst)
        residual -= np.outer(residual[:, point], q)  # new residuals vanish at x_1..x_m
        errors = np.abs(residual).max(axis=1)
        history.append(float(errors.max()))
    M = len(magic)
    basis_array = np.array(basis).reshape(M, n)
    magic_array = np.array(magic, dtype=np.int64)
    return EIMBasis(
        basis=basis_array,
        magic=magic_array,
        interpolation_matrix=basis_array[:, magic_array].T.copy(),
        combination=combination[:M, :M],
        selected=np.array(selected, dtype=np.int64),
        errors=np.array(history),
    )


@dataclass
class FunctionEIM:
    """EIM of a parametrized function ``g(x; mu)`` on fixed points.

    Built by :meth:`fit`; online, :meth:`__call__` evaluates ``g`` at the ``M`` magic points only.

    Attributes
    ----------
    function : callable
        ``g(points (n, 2 or d), mus (B, P)) -> (B, n)``.
    points : np.ndarray
        The points the function is interpolated on, shape ``(n, d)``.
    eim : EIMBasis
    mus : np.ndarray
        Selected parameters ``mu_m``, shape ``(M, P)``.
    """

    function: Callable[[np.ndarray, np.ndarray], np.ndarray]
    points: np.ndarray
    eim: EIMBasis
    mus: np.ndarray

    @classmethod
    def fit(cls, function, points: np.ndarray, training_set: np.ndarray, **greedy_options) -> "FunctionEIM":
        """Sample ``function`` on ``training_set`` ``(n_train, P)`` and run :func:`eim_greedy` (options passed on)."""
        points = np.asarray(points, dtype=np.float64)
        training_set = np.atleast_2d(np.asarray(training_set, dtype=np.float64))
        eim = eim_greedy(function(points, training_set), **greedy_options)
        return cls(function, points, eim, training_set[eim.selected])

    @property
    def magic_points(self) -> np.ndarray:
        """Coordinates of the magic points, shape ``(M, d)``."""
        return self.points[self.eim.magic]

    def coefficients(self, mus: np.ndarray) -> np.ndarray:
        """``theta(mu)``, ``(B, P) -> (B, M)``: ``g`` is evaluated at the magic points only."""
        return self.eim.coefficients(self.function(self.magic_points, np.atleast_2d(mus)))

    def __call__(self, mus: np.ndarray) -> np.ndarray:
        """The interpolant on all points, ``(B, P) -> (B, n)``."""
        return self.coefficients(mus) @ self.eim.basis


@dataclass
class ParametricEIM:
    """EIM of a parameter-dependent matrix or vector given by its assembled data on a fixed pattern.

    ``A(mu) ~ A_M(mu) = sum_m theta_m(mu) Q_m = sum_m beta_m(mu) A(mu_m)``, with ``theta`` from the
    entries of ``A(mu)`` at the magic positions (an ``entries(mus) -> (B, M)`` callable; online, it
    must cost ``O(M)``).

    Attributes
    ----------
    eim : EIMBasis
        On the candidate positions (for a symmetric matrix: its upper triangle).
    positions : np.ndarray
        Magic points as positions in the full data vector, shape ``(M,)``.
    collateral : np.ndarray
        ``Q_m`` as full data vectors (rows), shape ``(M, nnz)``.
    mus : np.ndarray
        Selected parameters ``mu_m``, shape ``(M, P)``.
    """

    eim: EIMBasis
    positions: np.ndarray
    collateral: np.ndarray
    mus: np.ndarray

    @classmethod
    def fit(
        cls,
        data: Callable[[np.ndarray], np.ndarray],
        training_set: np.ndarray,
        candidates: np.ndarray | None = None,
        batch_size: int = 64,
        **greedy_options,
    ) -> "ParametricEIM":
        """Run the greedy on the assembled data ``data(mus) -> (B, nnz)`` over ``training_set`` ``(n, P)``.

        ``candidates`` restricts magic points to some positions (e.g. the upper triangle of a
        symmetric matrix, which halves the memory); the collateral basis is then rebuilt on all
        positions from the selected assembled matrices.
        """
        training_set = np.atleast_2d(np.asarray(training_set, dtype=np.float64))
        chunks = []
        for start in range(0, len(training_set), batch_size):
            block = data(training_set[start : start + batch_size])
            chunks.append(block if candidates is None else block[:, candidates])
        eim = eim_greedy(np.concatenate(chunks), **greedy_options)
        mus = training_set[eim.selected]
        snapshots = data(mus) if len(mus) else np.zeros((0, 0))
        positions = eim.magic if candidates is None else np.asarray(candidates)[eim.magic]
        collateral = eim.combination.T @ snapshots if len(mus) else snapshots
        return cls(eim, np.asarray(positions, dtype=np.int64), collateral, mus)

    @property
    def size(self) -> int:
        return self.eim.size

    def coefficients(self, entries: np.ndarray) -> np.ndarray:
        """``theta`` from the entries at :attr:`positions`, ``(B, M) -> (B, M)``."""
        return self.eim.coefficients(entries)

    def weights(self, entries: np.ndarray) -> np.ndarray:
        """``beta`` (weights of the matrices ``A(mu_m)``), ``(B, M) -> (B, M)``."""
        return self.eim.weights(entries)

    def approximate(self, entries: np.ndarray) -> np.ndarray:
        """``A_M(mu)`` as data, ``(B, M) -> (B, nnz)``."""
        return self.coefficients(entries) @ self.collateral
