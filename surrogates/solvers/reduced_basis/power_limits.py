"""Nonintrusive log-determinants and inverses of affine SPD operators: EIM on the powers of the operator.

Following Casenave, Akkari, Charles and Rey ("Nonintrusive approximation of parametrized limits of
matrix power algorithms -- application to matrix inverses and log-determinants"): ``log det A(mu)``
and ``A(mu)^-1`` are limits of polynomials in ``A(mu)`` (a power algorithm), so an interpolation that
reproduces the powers of the operator reproduces these limits up to a computable truncation error.

**Setting.** The operator EIM (:class:`~.reductor.EIMSystem`) gives, from ``M`` entries of ``A(mu)``,
``A(mu) = sum_m beta_m(mu) A(mu_m)``, exact (to round-off) when ``A`` is affine with ``M`` terms.
With the product ``X`` (the operator at unit coefficient) write ``C(mu) = X^-1/2 A(mu) X^-1/2``;
every power ``C(mu)^k``, ``k <= K``, is a polynomial of degree ``k`` in ``beta(mu)`` with matrix
coefficients.

**EIM on the powers.** The greedy of :func:`~.eim.eim_greedy` runs on the vector-valued function
``mu -> (phi_alpha(beta(mu)))_alpha`` of all products of Chebyshev polynomials of total degree
``<= K`` (:mod:`.polynomial_basis`, ``D = binom(K + M, M)`` of them). It selects ``D`` parameters
``mu_j`` (the *power points*) and magic functions; online, ``lambda(mu)`` with
``sum_j lambda_j(mu) phi(beta(mu_j)) = phi(beta(mu))`` follows from a ``D x D`` unit triangular
solve. Hence ``sum_j lambda_j C(mu_j)^k = C(mu)^k`` for every ``k <= K`` and, for any polynomial ``p``
of degree ``<= K``, ``sum_j lambda_j p(C(mu_j)) = p(C(mu))``. The nonintrusive approximations are

    log det A(mu) ~ sum_j lambda_j(mu) log det A(mu_j),     A(mu)^-1 b ~ sum_j lambda_j(mu) A(mu_j)^-1 b,

with ``log det A(mu_j)`` and ``A(mu_j)^-1 F_f`` computed offline (sparse Cholesky-type factorization);
``log det X`` cancels because ``sum_j lambda_j = 1``.

**Error bound.** Take ``p_K`` the degree-``K`` truncated series of ``log`` (or ``1 / x``) on an
interval ``[a, b]`` holding the spectra of ``C(mu)`` and of every ``C(mu_j)``; with ``f = log - p_K``,

    |log det A(mu) - sum_j lambda_j log det A(mu_j)| = |tr f(C(mu)) - sum_j lambda_j tr f(C(mu_j))|
                                                     <= N_h (1 + |lambda(mu)|_1) E_K(a, b),

and ``||A^-1 b - sum_j lambda_j A_j^-1 b||_X <= (1 + |lambda|_1) E^inv_K(a, b) ||b||_{X'}``
(:mod:`.series_bounds`). The interval is rigorous: ``A = sum_k c_k T_k`` and ``X = sum_k T_k`` with
positive semidefinite local terms ``T_k``, so ``spec C(mu)`` lies in ``[min_k c_k(mu), max_k c_k(mu)]``,
and ``c(mu) = sum_m beta_m(mu) c(mu_m)``, whose extremes over ``k`` are extremes over the few distinct
rows of ``[c_k(mu_1), ..., c_k(mu_M)]`` (one per block for the thermal block). Online nothing of size
``N_h`` is touched: ``M`` matrix entries, an ``M x M`` and a ``D x D`` triangular solve, and ``O(D)``
for the value alone (:meth:`PowerLimitModel.log_det` with ``bound=False``).

**Clusters and reference.** Any ``X_r = sum_k r_k T_k`` (``r > 0``, constant on the rows) may replace
``X``: the interval becomes ``[min_u c_u / r_u, max_u c_u / r_u]``, whose ratio :meth:`PowerLimitsEIM.build_box`
makes the largest ratio of one coefficient over the box. The unknowns whose local terms all have row
``u`` give the eigenvalue ``c_u(mu) / r_u`` with multiplicity ``m_u`` at every ``mu``
(:func:`cluster_multiplicities`): their part ``sum_u m_u log c_u(mu)`` of ``log det A`` is exact, only
the rest is interpolated, and ``N_h`` in the bound becomes ``R = N_h - sum_u m_u``::

    log det A(mu) ~ sum_j lambda_j (log det A(mu_j) - g_j) + sum_u m_u log c_u(mu),   g_j = sum_u m_u log c_u(mu_j),
    |error| <= R (1 + |lambda(mu)|_1) E_K(a, b).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from surrogates.solvers.logdet import SPDFactor
from surrogates.solvers.reduced_basis.eim import EIMBasis, eim_greedy
from surrogates.solvers.reduced_basis.polynomial_basis import ChebyshevProducts
from surrogates.solvers.reduced_basis.problem import DiffusionProblem
from surrogates.solvers.reduced_basis.reductor import EIMSystem
from surrogates.solvers.reduced_basis.series_bounds import SERIES, inverse_truncation_bound, log_truncation_bound


COVERS = ("tensor", "homogeneous")


@dataclass
class LogDetEstimate:
    """Result of :meth:`PowerLimitModel.log_det` for ``B`` parameters.

    Attributes
    ----------
    value : np.ndarray
        Approximation of ``log det A(mu)``, shape ``(B,)``.
    bound : np.ndarray or None
        Upper bound of the absolute error, shape ``(B,)`` (``None`` when not asked for).
    lebesgue : np.ndarray or None
        ``|lambda(mu)|_1``, shape ``(B,)``.
    """

    value: np.ndarray
    bound: np.ndarray | None = None
    lebesgue: np.ndarray | None = None


@dataclass
class PowerLimitModel:
    """Online evaluator of ``log det A(mu)`` and ``A(mu)^-1 b(mu)`` (built by :class:`PowerLimitsEIM`).

    Attributes
    ----------
    system : EIMSystem
        Operator (and right-hand side) EIM: magic entries -> ``beta(mu)`` (``M`` terms).
    features : ChebyshevProducts
        ``phi`` on the box of ``beta`` seen offline (``D`` functions of total degree ``<= K``).
    powers : EIMBasis
        EIM on ``phi``: magic functions and the ``D x D`` interpolation data.
    mus : np.ndarray
        Power points ``mu_j``, shape ``(D, P)``.
    log_dets : np.ndarray
        ``log det A(mu_j)``, shape ``(D,)``.
    coefficient_rows : np.ndarray
        Distinct rows ``[c_k(mu_1), ..., c_k(mu_M)]`` of the local coefficients, shape ``(U, M)``.
    point_interval : tuple[float, float]
        Smallest and largest spectral bounds over the power points.
    dim : int
        ``N_h``.
    series : str
        Truncated series of the bound (``"chebyshev"`` or the paper's ``"neumann"``).
    solutions : np.ndarray or None
        ``A(mu_j)^-1 F_f``, shape ``(D, M_f, N_h)``, for :meth:`solve`.
    rhs_gram : np.ndarray or None
        ``F^T X^-1 F``, shape ``(M_f, M_f)`` (``||b(mu)||_{X'}^2`` from ``theta^f``).
    info : dict
        Offline facts (timings, sizes, reproduction error).
    reference : np.ndarray or None
        ``r_u > 0`` of the log-det bound's reference ``X_r = sum_k r_k T_k``, shape ``(U,)`` (ones: ``X``).
    multiplicities : np.ndarray or None
        ``m_u``: unknowns whose local terms all have row ``u`` (:func:`cluster_multiplicities`), shape
        ``(U,)``; zeros: the plain method.
    lower, upper : np.ndarray or None
        The parameter box the model was built on, shape ``(P,)`` each.
    """

    system: EIMSystem
    features: ChebyshevProducts
    powers: EIMBasis
    mus: np.ndarray
    log_dets: np.ndarray
    coefficient_rows: np.ndarray
    point_interval: tuple[float, float]
    dim: int
    series: str = "chebyshev"
    solutions: np.ndarray | None = None
    rhs_gram: np.ndarray | None = None
    info: dict | None = None
    reference: np.ndarray | None = None
    multiplicities: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def __post_init__(self):
        U = len(self.coefficient_rows)
        self.reference = np.ones(U) if self.reference is None else np.asarray(self.reference, dtype=np.float64)
        counts = np.zeros(U) if self.multiplicities is None else self.multiplicities
        self.multiplicities = np.asarray(counts, dtype=np.int64)
        if self.reference.shape != (U,) or np.any(self.reference <= 0) or self.multiplicities.shape != (U,):
            raise ValueError(f"reference and multiplicities need shape ({U},), the reference positive")
        if self.multiplicities.min() < 0 or self.multiplicities.sum() > self.dim:
            raise ValueError("multiplicities must be >= 0 and sum to at most N_h")
        # (D, M), once: online touches no power point (which may lie outside the box: a homogeneous cover)
        point_beta = self.system.operator.weights(self.system.operator_entries(self.mus))
        scaled = point_beta @ (self.coefficient_rows / self.reference[:, None]).T
        self._reference_interval = (float(scaled.min()), float(scaled.max()))
        self.point_clusters = self._clusters(point_beta)
        # log det ~ lambda . (l - g) + sum_u m_u log c_u(mu) with g_j = sum_u m_u log c_u(mu_j) (the clusters)
        # and lambda . v = phi_magic^T (B^-T C^T v): the value alone costs O(D)
        self._value_weights = solve_triangular(
            self.powers.interpolation_matrix, self.powers.combination.T @ (self.log_dets - self.point_clusters),
            lower=True, trans="T", unit_diagonal=True,
        )

    @property
    def degree(self) -> int:
        return self.features.degree

    @property
    def size(self) -> int:
        """Number of power points ``D``."""
        return self.powers.size

    # -- online pieces ------------------------------------------------------------------------------
    def operator_weights(self, mus: np.ndarray) -> np.ndarray:
        """``beta(mu)`` with ``A(mu) = sum_m beta_m A(mu_m)``, ``(B, P) -> (B, M)``, from ``M`` entries of ``A(mu)``."""
        mus = self.system.problem.parameter_space.check(mus)
        return self.system.operator.weights(self.system.operator_entries(mus))

    def power_weights(self, mus: np.ndarray) -> np.ndarray:
        """``lambda(mu)``, ``(B, P) -> (B, D)``: ``sum_j lambda_j phi(beta(mu_j)) = phi(beta(mu))``."""
        return self._power_weights(self.operator_weights(mus))

    def _power_weights(self, beta: np.ndarray) -> np.ndarray:
        return self.powers.weights(self.features(beta)[:, self.powers.magic])

    @property
    def scattered(self) -> int:
        """``R = N_h - sum_u m_u``: eigenvalues outside the clusters, the factor of the log-det bound."""
        return int(self.dim - self.multiplicities.sum())

    def _clusters(self, beta: np.ndarray) -> np.ndarray:
        if not self.multiplicities.any():
            return np.zeros(len(beta))
        used = self.multiplicities > 0
        return np.log(np.asarray(beta) @ self.coefficient_rows[used].T) @ self.multiplicities[used]

    def spectral_interval(self, beta: np.ndarray, reference: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``[a, b]`` holding the spectra of ``C(mu)`` and of every ``C(mu_j)``, from ``beta`` ``(B, M)``.

        With ``reference``, of ``X_r^-1/2 A X_r^-1/2`` with ``X_r = sum_k r_k T_k`` (the log-det bound).
        """
        ratios = np.asarray(beta) @ self.coefficient_rows.T  # (B, U): c_k(mu) for the distinct k
        if np.any(ratios.min(axis=1) <= 0):
            raise ValueError("A(mu) is not positive definite at this parameter (a non-positive local coefficient)")
        interval = self.point_interval
        if reference:
            ratios = ratios / self.reference
            interval = self._reference_interval
        return np.minimum(ratios.min(axis=1), interval[0]), np.maximum(ratios.max(axis=1), interval[1])

    def log_det(self, mus: np.ndarray, bound: bool = True) -> LogDetEstimate:
        """``log det A(mu)`` for parameters ``(B, P)``; with ``bound``, its error bound (``O(D^2)`` more)."""
        return self.log_det_weights(self.operator_weights(mus), bound)

    def log_det_weights(self, beta: np.ndarray, bound: bool = True, eim_scale=1.0) -> LogDetEstimate:
        """:meth:`log_det` of ``A = sum_m beta_m A(mu_m)`` from ``beta`` ``(B, M)`` (no parameter check).

        ``eim_scale`` multiplies the operator EIM error (``beta`` of ``sigma A(mu)``: ``sigma``).
        """
        beta = np.atleast_2d(np.asarray(beta, dtype=np.float64))
        phi = self.features(beta)[:, self.powers.magic]
        value = phi @ self._value_weights + self._clusters(beta)
        if not bound:
            return LogDetEstimate(value)
        lebesgue = np.abs(self.powers.weights(phi)).sum(axis=1)
        a, b = self.spectral_interval(beta, reference=True)
        error = self.scattered * (1.0 + lebesgue) * log_truncation_bound(a, b, self.degree, self.series)
        if self.system.eim_error > 0:  # its coercivity constant is the one with respect to X
            error = error + self._eim_log_det_error(self.spectral_interval(beta)[0], eim_scale)
        return LogDetEstimate(value, error, lebesgue)

    def _eim_log_det_error(self, a: np.ndarray, scale=1.0) -> np.ndarray:
        """``|log det A - log det A_M| <= N_h eps / (a - eps)`` (eps: the EIM operator error; 0 if affine)."""
        eps = self.system.eim_error * np.asarray(scale)
        return self.dim * eps / np.maximum(a - eps, np.finfo(float).tiny)

    def solve(self, mus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A(mu)^-1 b(mu)`` and its error bound in the ``X`` norm: ``(B, P) -> ((B, N_h), (B,))``."""
        if self.solutions is None:
            raise ValueError("this model was built without inverse data (with_inverse=False)")
        mus = self.system.problem.parameter_space.check(mus)
        beta = self.operator_weights(mus)
        lam = self._power_weights(beta)
        theta_f = self.system.rhs.coefficients(self.system.rhs_entries(mus))  # (B, M_f)
        u = np.einsum("bj,bf,jfn->bn", lam, theta_f, self.solutions)
        a, b = self.spectral_interval(beta)
        rhs_norm = np.sqrt(np.maximum(np.einsum("bf,fg,bg->b", theta_f, self.rhs_gram, theta_f), 0.0))
        bound = (1.0 + np.abs(lam).sum(axis=1)) * inverse_truncation_bound(a, b, self.degree, self.series) * rhs_norm
        return u, bound


class PowerLimitsEIM:
    """Offline stage of :class:`PowerLimitModel`: the ``_target_`` of ``conf/solver/power_limits.yaml``.

    Parameters
    ----------
    degree
        ``K``: the powers reproduced exactly (``D = binom(K + M, M)`` power points and factorizations).
    eim_training_size, eim_check_size
        Random parameters of the operator EIM, and further ones on which its error is measured.
    max_affine_terms
        The operator must be reproduced with at most this many EIM terms.
    affine_rtol
        ... and to this EIM error relative to the largest local coefficient; otherwise ``ValueError``.
    power_training_factor
        The power EIM greedy chooses among ``factor * D`` random parameters.
    power_rtol
        Stopping tolerance of that greedy (relative; it stops earlier only on dependent functions).
    with_inverse
        Also store ``A(mu_j)^-1 F_f`` (``D M_f`` vectors of size ``N_h``) for :meth:`PowerLimitModel.solve`.
    series
        Series of the error bound: ``"chebyshev"`` (sharper) or ``"neumann"`` (the paper's power series).
    seed, progress
        Random parameters; print the offline progress.
    splits
        :meth:`build_partition` cuts every parameter range into this many pieces of equal ratio.
    cover
        ``"tensor"``: ``splits^P`` sub-boxes; ``"homogeneous"`` (operators with ``A(t mu) = t A(mu)``):
        about ``splits^(P-1)`` cubes of the same ratio, each serving the parameters up to a scalar
        factor (log-determinants only). See :mod:`.power_partition`.
    clusters
        Take the eigenvalues that are known exactly (:func:`cluster_multiplicities`) out of the
        interpolated part and out of the bound (``N_h`` becomes the number ``R`` of the others).
    """

    def __init__(
        self,
        degree: int = 6,
        eim_training_size: int = 50,
        eim_check_size: int = 20,
        max_affine_terms: int = 20,
        affine_rtol: float = 1e-10,
        power_training_factor: float = 2.0,
        power_rtol: float = 1e-12,
        with_inverse: bool = True,
        series: str = "chebyshev",
        seed: int = 0,
        progress: bool = False,
        clusters: bool = True,
        splits: int = 1,
        cover: str = "tensor",
    ):
        if int(degree) != degree or degree < 1:
            raise ValueError(f"degree must be a positive integer, got {degree}")
        if series not in SERIES:
            raise ValueError(f"series must be one of {SERIES}, got {series!r}")
        if power_training_factor < 1:
            raise ValueError(f"power_training_factor must be >= 1, got {power_training_factor}")
        self.degree = int(degree)
        self.eim_training_size = int(eim_training_size)
        self.eim_check_size = int(eim_check_size)
        self.max_affine_terms = int(max_affine_terms)
        self.affine_rtol = float(affine_rtol)
        self.power_training_factor = float(power_training_factor)
        self.power_rtol = float(power_rtol)
        self.with_inverse = bool(with_inverse)
        self.series = series
        self.seed = int(seed)
        self.progress = bool(progress)
        self.clusters = bool(clusters)
        if int(splits) != splits or splits < 1:
            raise ValueError(f"splits must be a positive integer, got {splits}")
        self.splits = int(splits)
        if cover not in COVERS:
            raise ValueError(f"cover must be one of {COVERS}, got {cover!r}")
        self.cover = cover

    def affine_system(self, problem: DiffusionProblem, rng: np.random.Generator) -> EIMSystem:
        """The operator EIM, refused (``ValueError``) unless it reproduces ``A(mu)`` as an affine, SPD family."""
        space = problem.parameter_space
        training = space.sample_uniform(self.eim_training_size, rng)
        if np.any(problem.coefficient_lower_bound(training) <= 0):
            raise ValueError("the operator is not SPD on the parameter domain (a non-positive coefficient lower bound)")
        system = EIMSystem.build(
            problem, training, max_terms=self.max_affine_terms + 1, rtol=1e-13,
            check_set=space.sample_uniform(self.eim_check_size, rng),
        )
        scale = float(np.abs(problem.local_coefficients(training)).max())
        if system.operator.size > self.max_affine_terms or system.eim_error > self.affine_rtol * scale:
            raise ValueError(
                f"the operator is not affine in the parameters: the EIM needs more than {self.max_affine_terms} terms "
                f"or leaves an error {system.eim_error:.2e} > {self.affine_rtol:g} x {scale:.3g}"
            )
        return system

    def build(self, problem: DiffusionProblem) -> PowerLimitModel:
        """Operator EIM, EIM on the powers, and one factorization per power point, on the whole box."""
        start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        system, rows, groups = self.prepare(problem, rng)
        space = problem.parameter_space
        model = self.build_box(system, rows, groups, np.asarray(space.lower), np.asarray(space.upper), rng)
        model.info["offline_seconds"] = time.perf_counter() - start
        return model

    def build_partition(self, problem: DiffusionProblem):
        """One model per sub-box of the ``splits^P`` partition (:func:`~.power_partition.build_partition`)."""
        # the partition module builds on this one: imported on use
        from surrogates.solvers.reduced_basis.power_partition import build_cover, build_partition

        if self.cover == "homogeneous":
            return build_cover(self, problem, self.splits)
        return build_partition(self, problem, self.splits)

    def prepare(self, problem: DiffusionProblem, rng: np.random.Generator) -> tuple[EIMSystem, np.ndarray, np.ndarray]:
        """The operator EIM, the distinct coefficient rows ``(U, M)`` and each local term's row ``(J,)``."""
        system = self.affine_system(problem, rng)
        rows, groups = np.unique(problem.local_coefficients(system.operator.mus).T, axis=0, return_inverse=True)
        if np.any(rows.min(axis=0) <= 0):
            raise ValueError("the operator is not SPD at the EIM parameters (a non-positive local coefficient)")
        return system, rows, np.asarray(groups).ravel()

    def build_box(
        self,
        system: EIMSystem,
        rows: np.ndarray,
        groups: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        rng: np.random.Generator,
    ) -> PowerLimitModel:
        """EIM on the powers over the parameter box ``[lower, upper]`` (``(P,)`` each) and its factorizations.

        ``rows`` and ``groups`` come from :meth:`prepare`; the reference ``X_r`` of the bound is
        ``sum_k r_k T_k`` with ``r_u`` the geometric mean of the extremes of ``c_u`` over the box's
        candidates (any positive ``r`` gives a valid bound; this one makes the box's interval narrow).
        """
        start = time.perf_counter()
        problem = system.problem
        lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        M = system.operator.size
        n_features = len(ChebyshevProducts.on_box(np.zeros(M), np.ones(M), self.degree).exponents)
        n_candidates = int(np.ceil(self.power_training_factor * n_features))
        candidates = lower + (upper - lower) * rng.random((n_candidates, len(lower)))
        beta = system.operator.weights(system.operator_entries(candidates))
        lo, hi = beta.min(axis=0), beta.max(axis=0)
        width = np.maximum(hi - lo, 1e-12 * np.maximum(np.abs(hi), 1.0))
        features = ChebyshevProducts.on_box(lo, lo + width, self.degree)
        samples = features(beta)
        powers = eim_greedy(samples, rtol=self.power_rtol)
        mus = candidates[powers.selected]
        point_beta = beta[powers.selected]
        ratios = point_beta @ rows.T
        coefficients = beta @ rows.T  # (n, U): c_u over the candidates
        reference = np.sqrt(coefficients.min(axis=0) * coefficients.max(axis=0))
        reproduced = powers.weights(samples[:, powers.magic]) @ samples[powers.selected]
        reproduction = float(np.abs(reproduced - samples).max())
        if reproduction > 1e-8:  # the bound assumes the powers are reproduced (to round-off)
            raise ValueError(
                f"the EIM on the powers reproduces the polynomials only to {reproduction:.1e}; lower power_rtol"
            )
        eim_seconds = time.perf_counter() - start

        log_dets = np.empty(len(mus))
        solutions = None
        rhs_vectors = system.rhs_vectors(system.rhs.collateral) if self.with_inverse else None  # (N_h, M_f)
        if self.with_inverse:
            solutions = np.empty((len(mus), rhs_vectors.shape[1], problem.dim))
        for j, mu in enumerate(mus):
            factor = SPDFactor(system.matrix(mu))
            log_dets[j] = factor.logdet
            if solutions is not None:
                solutions[j] = factor.solve(rhs_vectors).T
            if self.progress and (j + 1) % 100 == 0:
                print(f"power points: {j + 1} / {len(mus)} factorized", flush=True)
        rhs_gram = None
        if self.with_inverse:
            z = SPDFactor(problem.product).solve(rhs_vectors)
            rhs_gram = rhs_vectors.T @ z
        info = {
            "operator_eim_terms": M,
            "operator_eim_error": system.eim_error,
            "features": features.size,
            "power_points": powers.size,
            "reproduction_error": reproduction,
            "eim_seconds": eim_seconds,
            "offline_seconds": time.perf_counter() - start,
        }
        return PowerLimitModel(
            system=system,
            features=features,
            powers=powers,
            mus=mus,
            log_dets=log_dets,
            coefficient_rows=rows,
            point_interval=(float(ratios.min()), float(ratios.max())),
            dim=problem.dim,
            series=self.series,
            solutions=solutions,
            rhs_gram=rhs_gram,
            info=info,
            reference=reference,
            multiplicities=cluster_multiplicities(problem, groups, len(rows)) if self.clusters else None,
            lower=lower,
            upper=upper,
        )


def cluster_multiplicities(problem: DiffusionProblem, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """How often each ``c_u(mu) / r_u`` is an eigenvalue of ``X_r^-1/2 A(mu) X_r^-1/2``, at least, ``(U,)``.

    Let ``S_u`` be the unknowns whose local terms all have coefficient row ``u`` (``T_k e_i = 0`` for
    every other term ``k``). For ``w`` supported in ``S_u``, ``A(mu) w = c_u T_u w`` and
    ``X_r w = r_u T_u w``, so ``(A - (c_u / r_u) X_r)`` vanishes on ``span{e_i, i in S_u}`` and
    ``c_u / r_u`` is a generalized eigenvalue of multiplicity at least ``|S_u|``, for every ``mu``.

    Parameters
    ----------
    problem
        Its operator assembly gives which unknowns each local term ``k`` touches.
    groups
        Row ``u`` of each local term, shape ``(J,)``.
    n_groups
        ``U``.
    """
    assembly = problem.operator_assembly
    S = assembly.S.tocoo()  # (pattern position, local term) -> entry of T_k
    touching = S.data != 0
    unknown, group = assembly.cols[S.row[touching]], np.asarray(groups)[S.col[touching]]
    n = problem.dim
    smallest = np.full(n, n_groups, dtype=np.int64)
    largest = np.full(n, -1, dtype=np.int64)
    np.minimum.at(smallest, unknown, group)
    np.maximum.at(largest, unknown, group)
    pure = smallest == largest
    return np.bincount(smallest[pure], minlength=n_groups).astype(np.int64)
