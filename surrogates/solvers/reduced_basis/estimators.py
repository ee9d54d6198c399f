"""A posteriori error bound ``Delta(mu) = ||r(mu)||_{X'} / alpha_LB(mu)``: residual dual norm, two ways.

The residual of a reduced solution ``u_N(mu) = V c(mu)`` is an affine combination of fixed vectors,

    r(mu) = b_M(mu) - A_M(mu) V c = sum_j gamma_j(mu) rho_j,
    rho = [f_1, ..., f_Mf, -Q_1 v_1, ..., -Q_M v_1, ..., -Q_M v_N]   (f: rhs EIM basis, Q: operator EIM basis)
    gamma(mu) = [theta_f(mu), c_1 theta_A(mu), ..., c_N theta_A(mu)],

and its dual norm is the ``X``-norm of its Riesz representer ``X^-1 r = sum_j gamma_j z_j``,
``z_j = X^-1 rho_j``.

*Classic* (offline/online decomposition of the quadratic form): store the Gram matrix
``G_ij = (z_i, z_j)_X`` (of size ``(M_f + M N)^2``) and evaluate ``||r||^2 = gamma^T G gamma`` online. The sum has terms of size
``||b||^2`` that cancel down to ``||r||^2``; each carries a round-off of ``eps ||b||^2``, so
``||r||`` cannot be resolved below ``sqrt(eps) ||b|| ~ 1e-8 ||b||``: the bound stalls there (and the
computed square can even be negative), whatever the true error. This is the loss of accuracy
analysed by Casenave, Ern and Lelièvre.

*Stable* (the remedy used here): orthonormalize the representers in ``X`` offline,
``z_j = sum_k W_k R_kj`` with ``(W_k, W_l)_X = delta_kl`` (block classical Gram-Schmidt with
reorthogonalization; numerically dependent directions are dropped), and evaluate
``||r||_{X'} = ||R gamma||_2`` online. The cancellation now happens in the *vector* ``R gamma``, whose
entries carry a round-off of ``eps ||b||``, not ``sqrt(eps) ||b||``: the bound follows the true error
down to ``~1e-14`` relative. Same online cost as the classic formula, ``O(K (M_f + M N))`` with
``K <= M_f + M N``: with many EIM terms ``K ~ M N`` and the cost grows like ``(M N)^2``.

*Compressed* (the stable form at a lower online cost): scale the components by typical magnitudes
``s_j`` of ``gamma_j`` (the largest over sample parameters), ``G = R diag(s)``, ``g = gamma / s``,
and split ``G = Q Q^T G + E`` with ``Q`` an orthonormal basis of a dominant ``r``-dimensional range
of ``G`` (randomized range finder, then an SVD of the small ``Q^T G`` to trim the rank). Then

    ||P gamma|| <= ||R gamma|| <= ||P gamma|| + tail ||gamma / s||,   P = Q^T R  (r x n),  tail >= ||E||_2,

with ``tail = ||E||_F`` computed explicitly from ``E`` (no estimate): adding ``tail ||g||`` keeps the
bound an upper bound for *every* parameter, whatever the scaling, and the compressed bound exceeds
the stable one by at most ``tail ||g||``. The rank is chosen so that ``tail <= rtol ||G||_F``. The
residual components are nearly dependent (the EIM terms of a smooth coefficient and the basis
vectors both have fast-decaying singular values, and ``gamma_j`` is small for late EIM terms), so
``r`` is a fraction of ``K`` and the online cost is ``O(r (M_f + M N))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

ESTIMATORS = ("stable", "classic", "compressed")


class _Columns:
    """A matrix that grows by columns (amortized doubling), shape ``(n, k)``."""

    def __init__(self, n: int, capacity: int = 16):
        self._data = np.zeros((n, max(capacity, 1)))
        self.k = 0

    @property
    def array(self) -> np.ndarray:
        return self._data[:, : self.k]

    def append(self, columns: np.ndarray) -> None:
        columns = np.asarray(columns).reshape(self._data.shape[0], -1)
        need = self.k + columns.shape[1]
        if need > self._data.shape[1]:
            grown = np.zeros((self._data.shape[0], max(need, 2 * self._data.shape[1])))
            grown[:, : self.k] = self.array
            self._data = grown
        self._data[:, self.k : need] = columns
        self.k = need


class _Growing2D:
    """A matrix that grows in both dimensions, filled with zeros, shape ``(rows, cols)``."""

    def __init__(self):
        self._data = np.zeros((16, 16))
        self.rows = self.cols = 0

    def resize(self, rows: int, cols: int) -> None:
        if rows > self._data.shape[0] or cols > self._data.shape[1]:
            grown = np.zeros((max(rows, 2 * self._data.shape[0]), max(cols, 2 * self._data.shape[1])))
            grown[: self.rows, : self.cols] = self.array
            self._data = grown
        self.rows, self.cols = max(self.rows, rows), max(self.cols, cols)

    def __setitem__(self, key, value):
        self._data[key] = value

    def __getitem__(self, key):
        return self._data[key]

    @property
    def array(self) -> np.ndarray:
        return self._data[: self.rows, : self.cols]


class ResidualRepresentation:
    """Offline data of both residual-norm formulas, extended component block by component block.

    Parameters
    ----------
    product
        ``X``, sparse SPD ``(N_h, N_h)``; factorized once (sparse LU) for the Riesz representers.
    drop_tol
        A representer whose ``X``-norm after orthogonalization is below ``drop_tol`` times its norm
        is taken as dependent (it adds a column to ``R`` but no direction).
    """

    def __init__(self, product: sp.spmatrix, drop_tol: float = 1e-13):
        self.product = sp.csr_matrix(product)
        self._lu = spla.splu(sp.csc_matrix(product))
        n = self.product.shape[0]
        self._W, self._XW = _Columns(n), _Columns(n)
        self._R = _Growing2D()
        self._n_components = 0
        self.drop_tol = float(drop_tol)

    @property
    def n_components(self) -> int:
        return self._n_components

    @property
    def rank(self) -> int:
        """``K``: the number of orthonormal directions kept."""
        return self._W.k

    @property
    def R(self) -> np.ndarray:
        """Shape ``(K, n_components)``: coefficients of the representers in the orthonormal basis."""
        return self._R.array[: self.rank, : self.n_components]

    @property
    def gram(self) -> np.ndarray:
        """Shape ``(n_components, n_components)``: ``G_ij = (z_i, z_j)_X = (R^T R)_ij`` (classic formula).

        Computed from ``R`` rather than from the representers themselves (which would have to be
        kept, ``N_h x n_components``); either way its entries carry a relative round-off of ``eps``,
        and the loss of accuracy of the classic formula comes from the online quadratic form.
        """
        return self.R.T @ self.R

    def add(self, rho: np.ndarray) -> None:
        """Append residual components ``rho``, shape ``(N_h, k)``."""
        rho = np.asarray(rho, dtype=np.float64).reshape(self.product.shape[0], -1)
        z = self._lu.solve(rho)
        old, k = self.n_components, rho.shape[1]
        self._n_components = old + k
        # stable: block classical Gram-Schmidt against the directions kept so far, twice (BLAS3) ...
        first = self.rank
        norms0 = np.sqrt(np.maximum(np.einsum("ij,ij->j", z, rho), 0.0))
        v = z.copy()
        coeffs = np.zeros((first, k))
        for _ in range(2):
            if first:
                h = self._XW.array.T @ v
                v -= self._W.array @ h
                coeffs += h
        self._R.resize(first + k, old + k)
        self._R[:first, old : old + k] = coeffs
        after = np.sqrt(np.maximum(np.einsum("ij,ij->j", v, self.product @ v), 0.0))
        # ... then column by column against this block's new directions, repeated until the norm stops
        # dropping by more than half (Kahan-Parlett); a column that lost most of its norm is nearly
        # dependent and is re-orthogonalized against *all* directions, else its rounding noise would
        # spoil the orthogonality.
        for j in range(k):
            col = old + j
            w = v[:, j].copy()
            previous = after[j]
            full = previous < 0.5 * norms0[j]
            norm, xw = previous, None
            for sweep in range(6):
                low = 0 if full else first
                if self.rank > low:
                    h = self._XW.array[:, low:].T @ w
                    w -= self._W.array[:, low:] @ h
                    self._R[low : self.rank, col] += h
                xw = self.product @ w
                norm = float(np.sqrt(max(float(w @ xw), 0.0)))
                if sweep >= 1 and norm >= 0.5 * previous:
                    break
                full = full or norm < 0.5 * previous
                previous = norm
            if norms0[j] > 0 and norm > self.drop_tol * norms0[j]:
                self._R[self.rank, col] = norm
                self._W.append(w / norm)
                self._XW.append(xw / norm)
        self._R.rows = self.rank


def residual_coefficients(theta_f: np.ndarray, u: np.ndarray, theta_a: np.ndarray) -> np.ndarray:
    """``gamma(mu)`` in the component order of :class:`ResidualRepresentation`.

    Parameters
    ----------
    theta_f
        Right-hand side EIM coefficients, shape ``(B, M_f)``.
    u
        Reduced solutions, shape ``(B, N)``.
    theta_a
        Operator EIM coefficients, shape ``(B, M)``.

    Returns
    -------
    np.ndarray
        Shape ``(B, M_f + N M)``: ``[theta_f, u_1 theta_a, ..., u_N theta_a]``.
    """
    B = len(theta_f)
    return np.concatenate([theta_f, (u[:, :, None] * theta_a[:, None, :]).reshape(B, -1)], axis=1)


def dual_norm_stable(R: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """``||r||_{X'} = ||R gamma||_2``; ``R (K, n)``, ``gamma (B, n)`` -> ``(B,)``."""
    return np.linalg.norm(gamma @ R.T, axis=1)


def dual_norm_classic(gram: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """``||r||_{X'} = sqrt(gamma^T G gamma)`` (clipped at 0); ``G (n, n)``, ``gamma (B, n)`` -> ``(B,)``."""
    return np.sqrt(np.maximum(np.einsum("bi,bi->b", gamma @ gram, gamma), 0.0))


@dataclass
class CompressedResidual:
    """Low-rank stable residual data: ``||R gamma|| <= ||P gamma|| + tail ||gamma / scale||``.

    Attributes
    ----------
    P : np.ndarray
        ``Q^T R``, shape ``(r, n)``.
    scale : np.ndarray
        Component scales ``s``, shape ``(n,)``, positive.
    tail : float
        ``||R diag(s) - Q Q^T R diag(s)||_F``, an upper bound of the spectral norm of the remainder.
    """

    P: np.ndarray
    scale: np.ndarray
    tail: float

    @property
    def rank(self) -> int:
        return self.P.shape[0]

    def dual_norm(self, gamma: np.ndarray) -> np.ndarray:
        """Upper bound of ``||R gamma||``: ``gamma (B, n) -> (B,)``."""
        gamma = np.atleast_2d(gamma)
        head = np.linalg.norm(gamma @ self.P.T, axis=1) if self.rank else np.zeros(len(gamma))
        return head + self.tail * np.linalg.norm(gamma / self.scale, axis=1)


def compress_residual(
    R: np.ndarray, scale: np.ndarray, rtol: float = 1e-10, block: int = 32, seed: int = 0
) -> CompressedResidual:
    """Compress the stable residual data ``R`` ``(K, n)`` with component scales ``scale`` ``(n,)``.

    Randomized range finder on ``G = R diag(scale)`` (blocks of ``block`` Gaussian vectors,
    orthogonalized twice) until the explicitly computed remainder satisfies
    ``||G - Q Q^T G||_F <= rtol ||G||_F / 2``; then the SVD of the small ``Q^T G`` drops the trailing
    directions while the total remainder stays below ``rtol ||G||_F``. Cost ``O(K n r)``.
    """
    R = np.asarray(R, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    K, n = R.shape
    if scale.shape != (n,) or not np.all(scale > 0):
        raise ValueError(f"scale must be positive with shape ({n},)")
    G = R * scale
    target = float(rtol) * float(np.linalg.norm(G))
    rng = np.random.default_rng(seed)
    Q = np.zeros((K, 0))
    limit = min(K, n)
    E = G
    while True:
        remainder = float(np.linalg.norm(E))
        if remainder <= 0.5 * target or Q.shape[1] >= limit:
            break
        # the mean squared norm of E w over Gaussian w is ||E||_F^2: grow Q until the sampled
        # remainder falls below the target, then check it exactly
        while Q.shape[1] < limit:
            Y = G @ rng.standard_normal((n, min(block, limit - Q.shape[1])))
            for _ in range(2):
                Y -= Q @ (Q.T @ Y)
            sampled = float(np.sqrt(np.mean(np.einsum("ij,ij->j", Y, Y))))
            q, _ = np.linalg.qr(Y)
            Q = np.concatenate([Q, q], axis=1)
            if sampled <= 0.25 * target:
                break
        for _ in range(2):  # re-orthonormalize the whole basis (the blocks were orthogonalized pairwise)
            Q, _ = np.linalg.qr(Q)
        E = G - Q @ (Q.T @ G)
    # trim: G ~ Q U S W^T; dropping singular values s_k, k >= r adds sum s_k^2 to ||E||_F^2 (orthogonal parts)
    B = Q.T @ G
    if B.size:
        U, S, _ = np.linalg.svd(B, full_matrices=False)
        budget = max(target**2 - remainder**2, 0.0)
        dropped = np.cumsum((S**2)[::-1])[::-1]  # dropped[k] = sum_{j >= k} S_j^2
        keep = int(np.searchsorted(-dropped, -budget, side="left"))  # first k with dropped[k] <= budget
        keep = min(max(keep, 0), len(S))
        Q = Q @ U[:, :keep]
        E = G - Q @ (Q.T @ G)
        remainder = float(np.linalg.norm(E))
    return CompressedResidual(Q.T @ R, scale.copy(), remainder)


def coercivity_lower_bound(exact_lower_bound: np.ndarray, eim_error: float) -> np.ndarray:
    """Lower bound of the coercivity constant of the EIM operator ``A_M(mu)`` in the ``X``-norm.

    ``v^T A_M v >= v^T A v - |v^T (A - A_M) v| >= (alpha_LB(mu) - eps_EIM) ||v||_X^2``, where
    ``alpha_LB`` bounds the exact operator (the minimum of the coefficient, see
    :mod:`~surrogates.solvers.reduced_basis.problem`) and ``eps_EIM`` the EIM error in the
    ``X -> X'`` norm (measured offline, with a safety factor).

    Raises
    ------
    ValueError
        If the bound is not positive: the EIM is too inaccurate to certify the reduced model.
    """
    alpha = np.asarray(exact_lower_bound, dtype=np.float64) - float(eim_error)
    if np.any(alpha <= 0):
        raise ValueError(
            f"coercivity lower bound {alpha.min():.3g} <= 0: the EIM error {eim_error:.3g} exceeds the coercivity "
            "of the exact operator; use more EIM terms"
        )
    return alpha
