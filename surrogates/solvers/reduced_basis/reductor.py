"""Galerkin projection of the EIM-approximated system onto a growing reduced basis (offline stage).

With the EIM expansions ``A_M(mu) = sum_m theta_m(mu) Q_m`` and ``b_M(mu) = sum_f theta^f_f(mu) F_f``
and a basis ``V = [v_1, ..., v_N]`` orthonormal in ``X``, the reduced system is

    (sum_m theta_m(mu) V^T Q_m V) c = sum_f theta^f_f(mu) V^T F_f,

whose matrices ``V^T Q_m V`` (``M`` of size ``N x N``) and vectors ``V^T F_f`` are computed once
offline. Online, a query costs ``O(M^2)`` for the EIM coefficients (entries at ``M`` magic points and
a triangular solve), ``O(M N^2)`` to form the reduced matrix and ``O(N^3)`` to solve it: nothing
depends on the full dimension ``N_h``.

The reductor is incremental: :meth:`RBReductor.extend` adds one vector (Gram-Schmidt in ``X``, twice)
and updates the reduced matrices and the residual data of the error estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from surrogates.solvers.reduced_basis.eim import ParametricEIM
from surrogates.solvers.reduced_basis.estimators import ResidualRepresentation, _Columns
from surrogates.solvers.reduced_basis.model import ReducedModel
from surrogates.solvers.reduced_basis.problem import DiffusionProblem, LocalEntries


class ExtensionError(RuntimeError):
    """The vector offered to the basis is (numerically) already in its span."""


@dataclass
class EIMSystem:
    """The EIM-approximated full system ``A_M(mu) u = b_M(mu)`` of a problem.

    Attributes
    ----------
    problem : DiffusionProblem
    operator : ParametricEIM
        EIM of ``A(mu)`` (magic points in the upper triangle; ``A`` is symmetric).
    rhs : ParametricEIM
        EIM of ``b(mu)``.
    eim_error : float
        ``eps_EIM``: bound of ``||A(mu) - A_M(mu)||_{X -> X'}``, the largest over the check
        parameters, times the safety factor.
    """

    problem: DiffusionProblem
    operator: ParametricEIM
    rhs: ParametricEIM
    eim_error: float = 0.0

    @classmethod
    def build(
        cls,
        problem: DiffusionProblem,
        training_set: np.ndarray,
        max_terms: int | None = None,
        rtol: float = 1e-12,
        check_set: np.ndarray | None = None,
        safety_factor: float = 2.0,
    ) -> "EIMSystem":
        """Run the matrix and vector EIM greedy on ``training_set`` ``(n, P)`` and measure ``eps_EIM``.

        ``eps_EIM`` is measured on ``training_set`` plus ``check_set`` (parameters not used to build
        the EIM) with :meth:`DiffusionProblem.operator_error_bound`.
        """
        op = ParametricEIM.fit(
            problem.operator_data,
            training_set,
            candidates=problem.operator_assembly.upper_positions(),
            max_terms=max_terms,
            rtol=rtol,
        )
        rhs = ParametricEIM.fit(problem.rhs_data, training_set, max_terms=max_terms, rtol=rtol)
        system = cls(problem, op, rhs)
        checks = training_set if check_set is None else np.concatenate([training_set, check_set])
        errors = []
        for start in range(0, len(checks), 64):
            mus = checks[start : start + 64]
            weights = op.weights(system.operator_entries(mus))
            errors.append(problem.operator_error_bound(mus, weights, op.mus))
        system.eim_error = float(safety_factor * np.concatenate(errors).max())
        return system

    # -- online pieces ------------------------------------------------------------------------------
    def operator_entries(self, mus: np.ndarray) -> np.ndarray:
        """Entries of ``A(mu)`` at the magic points, ``(B, P) -> (B, M)``."""
        return self.operator_local.evaluate(self.problem.coefficient, np.atleast_2d(mus))

    def rhs_entries(self, mus: np.ndarray) -> np.ndarray:
        """Entries of ``b(mu)`` at its magic points, ``(B, P) -> (B, M_f)``."""
        return self.rhs_local.evaluate(self.problem.forcing, np.atleast_2d(mus))

    @cached_property
    def operator_local(self) -> LocalEntries:
        """How the magic entries of ``A(mu)`` follow from a few coefficient values."""
        return self.problem.operator_assembly.entries(self.operator.positions)

    @cached_property
    def rhs_local(self) -> LocalEntries:
        """How the magic entries of ``b(mu)`` follow from a few forcing values."""
        return self.problem.rhs_assembly.entries(self.rhs.positions)

    # -- full system --------------------------------------------------------------------------------
    def matrix(self, mu: np.ndarray) -> sp.csr_matrix:
        """``A_M(mu)``, CSR ``(N_h, N_h)``."""
        data = self.operator.approximate(self.operator_entries(np.asarray(mu)[None]))[0]
        return self.problem.operator_assembly.matrix(data)

    def vector(self, mu: np.ndarray) -> np.ndarray:
        """``b_M(mu)``, ``(N_h,)``."""
        return self.rhs_vectors(self.rhs.approximate(self.rhs_entries(np.asarray(mu)[None])))[:, 0]

    def rhs_vectors(self, data: np.ndarray) -> np.ndarray:
        """Right-hand side data rows ``(k, nnz_b)`` as full vectors (columns), ``(N_h, k)``."""
        out = np.zeros((self.problem.dim, len(data)))
        out[self.problem.rhs_assembly.rows] = np.asarray(data).T
        return out

    def solve(self, mu: np.ndarray) -> np.ndarray:
        """Full solution of the EIM system with the project's PCG, ``(N_h,)``."""
        return self.problem.solve_system(self.matrix(mu), self.vector(mu))[0]


class RBReductor:
    """Builds the reduced model of an :class:`EIMSystem` one basis vector at a time.

    Parameters
    ----------
    system
        The EIM-approximated full system.
    orthogonality_tol
        :meth:`extend` refuses a vector whose part orthogonal to the basis has an ``X``-norm below
        this fraction of its norm.
    """

    def __init__(self, system: EIMSystem, orthogonality_tol: float = 1e-10):
        self.system = system
        problem = system.problem
        self.product = problem.product
        n = problem.dim
        self._V, self._XV = _Columns(n), _Columns(n)
        assembly = problem.operator_assembly
        self._Q = [assembly.matrix(q) for q in system.operator.collateral]
        self._F = system.rhs_vectors(system.rhs.collateral)  # (N_h, M_f)
        M, Mf = len(self._Q), self._F.shape[1]
        self.reduced_operator = np.zeros((M, 0, 0))
        self.reduced_rhs = np.zeros((Mf, 0))
        self.residual = ResidualRepresentation(self.product)
        self.residual.add(self._F)
        self.orthogonality_tol = float(orthogonality_tol)

    @property
    def basis(self) -> np.ndarray:
        """``V``, shape ``(N_h, N)``, orthonormal in ``X``."""
        return self._V.array

    @property
    def size(self) -> int:
        return self._V.k

    def extend(self, u: np.ndarray) -> None:
        """Add ``u`` (``(N_h,)``) to the basis after Gram-Schmidt in ``X`` (twice).

        Raises
        ------
        ExtensionError
            If ``u`` is numerically in the span of the basis.
        """
        v = np.asarray(u, dtype=np.float64).copy()
        norm0 = float(np.sqrt(v @ (self.product @ v)))
        if not np.isfinite(norm0) or norm0 == 0.0:
            raise ExtensionError("cannot extend the basis with a zero or non-finite vector")
        for _ in range(2):
            if self.size:
                v -= self.basis @ (self._XV.array.T @ v)
        xv = self.product @ v
        norm = float(np.sqrt(max(v @ xv, 0.0)))
        if norm <= self.orthogonality_tol * norm0:
            raise ExtensionError(f"the new vector is in the span of the basis (relative norm {norm / norm0:.2e})")
        v, xv = v / norm, xv / norm
        V = self.basis
        N = self.size
        M = len(self._Q)
        Qv = np.column_stack([Q @ v for Q in self._Q])  # (N_h, M)
        QTv = np.column_stack([Q.T @ v for Q in self._Q])
        op = np.zeros((M, N + 1, N + 1))
        op[:, :N, :N] = self.reduced_operator
        op[:, :N, N] = (V.T @ Qv).T
        op[:, N, :N] = (V.T @ QTv).T
        op[:, N, N] = v @ Qv
        self.reduced_operator = op
        self.reduced_rhs = np.concatenate([self.reduced_rhs, (v @ self._F)[:, None]], axis=1)
        self._V.append(v)
        self._XV.append(xv)
        self.residual.add(-Qv)

    def reduce(self, metadata: dict | None = None, with_basis: bool = True) -> ReducedModel:
        """The reduced model of the current basis (arrays are copied; the reductor can go on extending)."""
        system, problem = self.system, self.system.problem
        return ReducedModel(
            problem=problem,
            operator_interpolation=system.operator.eim.interpolation_matrix.copy(),
            operator_entries=system.operator_local,
            rhs_interpolation=system.rhs.eim.interpolation_matrix.copy(),
            rhs_entries=system.rhs_local,
            reduced_operator=self.reduced_operator.copy(),
            reduced_rhs=self.reduced_rhs.copy(),
            residual_R=self.residual.R.copy(),
            residual_gram=self.residual.gram.copy(),
            eim_error=system.eim_error,
            basis=self.basis.copy() if with_basis else np.zeros((problem.dim, self.size)),
            layout=problem.layout,
            metadata=dict(metadata or {}),
        )
