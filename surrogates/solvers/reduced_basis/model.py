"""The reduced model: online solve and error bound, and its file format (one HDF5 file).

Online, for a batch of parameters ``mu`` (``B x P``):

1. the entries of ``A(mu)`` and ``b(mu)`` at the magic points (``O(M)`` evaluations of the
   coefficient and the forcing, weights stored in the file) give the EIM coefficients by forward
   substitution with the unit lower-triangular interpolation matrices (``O(M^2)``);
2. ``A_N = sum_m theta_m A_N^m`` (``O(M N^2)``), ``b_N = sum_f theta^f_f b_N^f``, ``A_N c = b_N`` (``O(N^3)``);
3. ``Delta(mu) = ||R gamma(mu)|| / alpha_LB(mu)`` (stable), ``sqrt(gamma^T G gamma) / alpha_LB`` (classic)
   or ``(||P gamma|| + tail ||gamma / s||) / alpha_LB`` (compressed: a low-rank form of the stable
   one that stays an upper bound, ``O(r (M_f + M N))`` with ``r`` the retained rank).

None of this depends on the full dimension; only :meth:`ReducedModel.reconstruct` (``V c``, for
fields) does.

File (``*.rb.h5``), attributes: ``format = "surrogates.reduced_basis"``, ``format_version``,
``kind = "reduced"``, ``problem_target`` / ``problem_config`` (the problem's registered name, looked up
in :mod:`surrogates.checkpoint.registry`, and its constructor arguments, JSON; format 1.0/1.1 named the
class by import path, accepted only for an allowed class),
``parameter_space`` (JSON), ``metadata`` (JSON: greedy and EIM history); datasets listed in
:data:`DATASETS`. :meth:`ReducedModel.load` checks all of it and raises :class:`ReducedModelFileError`
with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy.linalg import solve_triangular

from surrogates.errors import CheckpointError
from surrogates.solvers.reduced_basis.model_files import create_model_file, open_model_file
from surrogates.solvers.reduced_basis.estimators import (
    ESTIMATORS,
    CompressedResidual,
    coercivity_lower_bound,
    compress_residual,
    dual_norm_classic,
    dual_norm_stable,
    residual_coefficients,
)
from surrogates.solvers.reduced_basis.problem import DiffusionProblem, FieldLayout, LocalEntries, ParameterSpace

FORMAT = "surrogates.reduced_basis"
FORMAT_VERSION = "1.2"  # 1.1: optional compressed estimator data; 1.2: problem by registered name
SUPPORTED_MAJOR_VERSIONS = ("1",)
SUFFIX = ".rb.h5"

DATASETS = {
    # name: number of dimensions
    "operator/interpolation_matrix": 2,  # (M, M) unit lower triangular
    "operator/entry_weights": 2,  # (M, J)
    "operator/entry_points": 3,  # (J, E, 2)
    "operator/reduced": 3,  # (M, N, N)
    "rhs/interpolation_matrix": 2,  # (M_f, M_f)
    "rhs/entry_weights": 2,
    "rhs/entry_points": 3,
    "rhs/reduced": 2,  # (M_f, N)
    "estimator/R": 2,  # (K, M_f + N M)
    "estimator/gram": 2,  # (M_f + N M, M_f + N M)
    "basis/V": 2,  # (N_h, N)
    "basis/free": 1,  # (N_h,) node indices of the unknowns
}
OPTIONAL_DATASETS = {
    # written when the model holds a compressed estimator (format 1.1); recomputed when absent
    "estimator/compressed_P": 2,  # (r, M_f + N M)
    "estimator/compressed_scale": 1,  # (M_f + N M,)
}
DEFAULT_COMPRESSION_RTOL = 1e-10


class ReducedModelFileError(CheckpointError):
    """A file is missing, unreadable, foreign, of an unsupported version or inconsistent."""


@dataclass
class ReducedSolution:
    """Online answer for ``B`` parameters.

    Attributes
    ----------
    coefficients : np.ndarray
        ``c(mu)`` in the reduced basis, shape ``(B, N)``.
    bound : np.ndarray
        ``Delta(mu) >= ||u_M(mu) - V c(mu)||_X``, shape ``(B,)`` (with ``estimator="classic"``, only above
        its round-off floor of about ``sqrt(eps) ||b||``: below it the value can be 0).
    dual_norm : np.ndarray
        ``||r(mu)||_{X'}``, shape ``(B,)``.
    coercivity : np.ndarray
        ``alpha_LB(mu)``, shape ``(B,)``.
    """

    coefficients: np.ndarray
    bound: np.ndarray
    dual_norm: np.ndarray
    coercivity: np.ndarray


def make_problem(name: str, config: dict, path: str | Path | None = None) -> DiffusionProblem:
    """Re-create a problem from its registered name and constructor arguments (cheap: nothing is assembled).

    ``name`` selects from the package's allowlist of parametric problems
    (:func:`surrogates.checkpoint.registry.reduced_problem_class`); files of format 1.0/1.1 name the
    class by import path, accepted only when it is the path of an allowed class. Nothing is imported
    from the name.

    Raises
    ------
    CheckpointError
        Unknown name, or arguments that do not fit the class.
    """
    # The allowlist lists the package's parametric PDEs, which live above this layer: imported on use.
    from surrogates.checkpoint import construct
    from surrogates.checkpoint.registry import reduced_problem_class

    if not isinstance(config, dict):
        raise CheckpointError(path, f"problem_config must be a JSON object, got {type(config).__name__}")
    return construct(reduced_problem_class(name, path), config, "problem", path)


def problem_of_file(name: str, config: dict, space: ParameterSpace, path: str | Path) -> DiffusionProblem:
    """The problem a model file names (:func:`make_problem`), checked to have the parameter domain the file stores.

    Raises
    ------
    CheckpointError
        The problem cannot be re-created, or its parameter domain differs from ``space``; ``.problem``
        says which, for the caller's file error.
    """
    try:
        problem = make_problem(name, config, path)
    except CheckpointError as error:
        raise CheckpointError(path, f"cannot re-create the problem {name!r}: {error.problem}") from None
    if problem.parameter_space.to_dict() != space.to_dict():
        raise CheckpointError(
            path, f"parameter domain {space.to_dict()} differs from the problem's {problem.parameter_space.to_dict()}"
        )
    return problem


@dataclass
class ReducedModel:
    """Online stage of the reduced basis method with EIM. Built by :func:`~surrogates.solvers.reduced_basis.offline.RBEIM`.

    Attributes
    ----------
    problem : DiffusionProblem
        Evaluates the coefficient and the forcing at magic points, and the coercivity lower bound.
    operator_interpolation, rhs_interpolation : np.ndarray
        EIM interpolation matrices, ``(M, M)`` and ``(M_f, M_f)``.
    operator_entries, rhs_entries : LocalEntries
        The magic entries of ``A(mu)``, ``b(mu)`` from a few coefficient values.
    reduced_operator : np.ndarray
        ``V^T Q_m V``, shape ``(M, N, N)``.
    reduced_rhs : np.ndarray
        ``V^T F_f``, shape ``(M_f, N)``.
    residual_R, residual_gram : np.ndarray
        Stable and classic estimator data (:mod:`~surrogates.solvers.reduced_basis.estimators`).
    eim_error : float
        ``eps_EIM`` entering the coercivity lower bound.
    basis : np.ndarray
        ``V``, shape ``(N_h, N)`` (only to reconstruct fields).
    layout : FieldLayout
    metadata : dict
    compressed : CompressedResidual or None
        Low-rank estimator data (:func:`~surrogates.solvers.reduced_basis.estimators.compress_residual`);
        computed by :meth:`compress`, on the first ``estimator="compressed"`` query if absent.
    """

    problem: DiffusionProblem
    operator_interpolation: np.ndarray
    operator_entries: LocalEntries
    rhs_interpolation: np.ndarray
    rhs_entries: LocalEntries
    reduced_operator: np.ndarray
    reduced_rhs: np.ndarray
    residual_R: np.ndarray
    residual_gram: np.ndarray
    eim_error: float
    basis: np.ndarray
    layout: FieldLayout
    metadata: dict[str, Any] = field(default_factory=dict)
    compressed: CompressedResidual | None = None

    # -- sizes ------------------------------------------------------------------------------------
    @property
    def parameter_space(self) -> ParameterSpace:
        return self.problem.parameter_space

    @property
    def size(self) -> int:
        """``N``, the reduced basis size."""
        return self.reduced_operator.shape[1]

    @property
    def eim_sizes(self) -> tuple[int, int]:
        """``(M, M_f)``: EIM terms of the operator and of the right-hand side."""
        return self.reduced_operator.shape[0], self.reduced_rhs.shape[0]

    # -- online -----------------------------------------------------------------------------------
    def eim_coefficients(self, mus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(theta_A (B, M), theta_f (B, M_f))`` for checked parameters ``(B, P)``."""
        values_a = self.operator_entries.evaluate(self.problem.coefficient, mus)
        values_f = self.rhs_entries.evaluate(self.problem.forcing, mus)
        options = {"lower": True, "unit_diagonal": True, "check_finite": False}
        theta_a = solve_triangular(self.operator_interpolation, values_a.T, **options).T
        theta_f = solve_triangular(self.rhs_interpolation, values_f.T, **options).T
        return theta_a, theta_f

    def reduced_solve(self, mus: np.ndarray, check: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The online solve without the bound: ``(c (B, N), theta_A (B, M), theta_f (B, M_f))``.

        ``theta`` by forward substitution on the magic entries, ``A_N = sum_m theta_m A_N^m``
        (``O(M N^2)``), ``b_N`` likewise, and a dense ``N x N`` solve per parameter.
        """
        mus = self.parameter_space.check(mus) if check else np.atleast_2d(np.asarray(mus, dtype=np.float64))
        theta_a, theta_f = self.eim_coefficients(mus)
        B, N = len(mus), self.size
        if not N:
            return np.zeros((B, 0)), theta_a, theta_f
        M = len(self.reduced_operator)
        A = (theta_a @ self.reduced_operator.reshape(M, N * N)).reshape(B, N, N)
        b = theta_f @ self.reduced_rhs
        c = np.linalg.solve(A, b[..., None])[..., 0]
        return c, theta_a, theta_f

    def solve(self, mus: np.ndarray, estimator: str = "stable", check: bool = True) -> ReducedSolution:
        """Reduced solutions and error bounds for parameters ``(B, P)`` (or one ``(P,)``).

        Parameters
        ----------
        mus
            Parameters inside :attr:`parameter_space` (checked, with a ``1e-6`` relative slack).
        estimator
            Evaluation of the residual dual norm: ``"stable"`` (default), ``"classic"`` or
            ``"compressed"`` (an upper bound of the stable value, cheaper with many EIM terms; its data
            is computed by :meth:`compress` on first use if the model has none).
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        mus = self.parameter_space.check(mus) if check else np.atleast_2d(np.asarray(mus, dtype=np.float64))
        c, theta_a, theta_f = self.reduced_solve(mus, check=False)
        gamma = residual_coefficients(theta_f, c, theta_a)
        if estimator == "stable":
            dual = dual_norm_stable(self.residual_R, gamma)
        elif estimator == "classic":
            dual = dual_norm_classic(self.residual_gram, gamma)
        else:
            if self.compressed is None:
                self.compress()
            dual = self.compressed.dual_norm(gamma)
        alpha = coercivity_lower_bound(self.problem.coefficient_lower_bound(mus), self.eim_error)
        return ReducedSolution(c, dual / alpha, dual, alpha)

    def compress(self, rtol: float | None = None, samples: int = 200, seed: int = 0) -> CompressedResidual:
        """Compute (and keep) the compressed estimator data; online-sized work only.

        The component scales are the largest ``|gamma_j(mu)|`` over ``samples`` random parameters (with
        a floor of ``1e-14`` times the largest, so that no component is ignored); the rank is chosen
        so that the remainder ``tail <= rtol ||R diag(s)||_F`` (``rtol`` defaults to the value recorded
        in ``metadata["compression"]``, else ``1e-10``). The bound stays an upper bound for any
        parameter; see :func:`~surrogates.solvers.reduced_basis.estimators.compress_residual`.
        """
        settings = dict(self.metadata.get("compression") or {})
        rtol = float(settings.get("rtol", DEFAULT_COMPRESSION_RTOL) if rtol is None else rtol)
        mus = self.parameter_space.sample_uniform(samples, np.random.default_rng([seed, 2]))
        c, theta_a, theta_f = self.reduced_solve(mus, check=False)
        scale = np.abs(residual_coefficients(theta_f, c, theta_a)).max(axis=0)
        top = float(scale.max()) if scale.size else 1.0
        scale = np.maximum(scale, 1e-14 * (top if top > 0 else 1.0))
        self.compressed = compress_residual(self.residual_R, scale, rtol=rtol, seed=seed)
        self.metadata["compression"] = {
            "rtol": rtol,
            "rank": self.compressed.rank,
            "tail": self.compressed.tail,
            "stable_rank": int(self.residual_R.shape[0]),
        }
        return self.compressed

    def reconstruct(self, coefficients: np.ndarray) -> np.ndarray:
        """``V c``: ``(B, N) -> (B, N_h)`` (costs ``O(N_h N)``)."""
        return np.asarray(coefficients) @ self.basis.T

    def fields(self, coefficients: np.ndarray) -> np.ndarray:
        """Node fields ``(B, n_nodes)``, or ``(B, *grid_shape)`` on a structured grid, zero on the boundary."""
        return self.layout.to_nodes(self.reconstruct(coefficients))

    def truncated(self, size: int) -> "ReducedModel":
        """The model on the first ``size`` basis vectors (the greedy basis is hierarchical)."""
        if not 0 <= size <= self.size:
            raise ValueError(f"size must be in [0, {self.size}], got {size}")
        M, Mf = self.eim_sizes
        cols = Mf + size * M
        metadata = dict(self.metadata)
        if "compression" in metadata:  # the sub-model is compressed anew (on first use), with the same rtol
            metadata["compression"] = {"rtol": metadata["compression"]["rtol"]}
        R = self.residual_R[:, :cols]
        used = np.flatnonzero(np.any(R != 0, axis=1))
        rows = int(used.max()) + 1 if len(used) else 0
        return ReducedModel(
            self.problem,
            self.operator_interpolation,
            self.operator_entries,
            self.rhs_interpolation,
            self.rhs_entries,
            self.reduced_operator[:, :size, :size],
            self.reduced_rhs[:, :size],
            R[:rows],
            self.residual_gram[:cols, :cols],
            self.eim_error,
            self.basis[:, :size],
            self.layout,
            metadata,
        )

    # -- files ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to one HDF5 file (atomically: a temporary name renamed on success)."""
        path = Path(path)
        arrays = {
            "operator/interpolation_matrix": self.operator_interpolation,
            "operator/entry_weights": self.operator_entries.weights,
            "operator/entry_points": self.operator_entries.points,
            "operator/reduced": self.reduced_operator,
            "rhs/interpolation_matrix": self.rhs_interpolation,
            "rhs/entry_weights": self.rhs_entries.weights,
            "rhs/entry_points": self.rhs_entries.points,
            "rhs/reduced": self.reduced_rhs,
            "estimator/R": self.residual_R,
            "estimator/gram": self.residual_gram,
            "basis/V": self.basis,
            "basis/free": self.layout.free,
        }
        if self.compressed is not None:
            arrays["estimator/compressed_P"] = self.compressed.P
            arrays["estimator/compressed_scale"] = self.compressed.scale
        with create_model_file(path, FORMAT, FORMAT_VERSION, "reduced", self.problem, self.parameter_space,
                               self.eim_error) as f:
            if self.compressed is not None:
                f.attrs["compressed_tail"] = float(self.compressed.tail)
            f.attrs["n_nodes"] = int(self.layout.n_nodes)
            f.attrs["grid_shape"] = json.dumps(list(self.layout.grid_shape) if self.layout.grid_shape else None)
            f.attrs["metadata"] = json.dumps(self.metadata, default=_json_default)
            for name, value in arrays.items():
                f.create_dataset(name, data=np.asarray(value))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ReducedModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        ReducedModelFileError
            Missing file, not HDF5 (or truncated), not a reduced model (foreign HDF5), unsupported
            version, missing or inconsistent datasets, non-finite values.
        """
        path = Path(path)
        f = open_model_file(path, ReducedModelFileError, FORMAT, "a reduced basis model", SUPPORTED_MAJOR_VERSIONS,
                            FORMAT_VERSION)
        with f:
            for key in ("problem_target", "problem_config", "parameter_space", "eim_error", "n_nodes", "grid_shape"):
                if key not in f.attrs:
                    raise ReducedModelFileError(path, f"missing attribute {key!r}")
            arrays = {}
            for name, ndim in DATASETS.items():
                if name not in f:
                    raise ReducedModelFileError(path, f"missing dataset {name!r}")
                try:
                    value = np.asarray(f[name][...])
                except (OSError, RuntimeError) as error:
                    raise ReducedModelFileError(path, f"cannot read dataset {name!r}: {error}") from error
                if value.ndim != ndim:
                    raise ReducedModelFileError(path, f"dataset {name!r} has {value.ndim} dims, expected {ndim}")
                if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                    raise ReducedModelFileError(path, f"dataset {name!r} holds NaN or infinite values")
                arrays[name] = value
            compressed = None
            if all(name in f for name in OPTIONAL_DATASETS) and "compressed_tail" in f.attrs:
                P, scale = np.asarray(f["estimator/compressed_P"][...]), np.asarray(f["estimator/compressed_scale"][...])
                tail = float(f.attrs["compressed_tail"])
                if P.ndim != 2 or scale.ndim != 1 or not (np.all(np.isfinite(P)) and np.all(np.isfinite(scale))):
                    raise ReducedModelFileError(path, "estimator/compressed_P or compressed_scale is malformed")
                if not (np.isfinite(tail) and tail >= 0 and np.all(scale > 0)):
                    raise ReducedModelFileError(path, "compressed estimator: tail must be >= 0 and scales > 0")
                compressed = CompressedResidual(P, scale, tail)
            try:
                target = _attr(f, "problem_target")
                config = json.loads(_attr(f, "problem_config"))
                space = ParameterSpace.from_dict(json.loads(_attr(f, "parameter_space")))
                metadata = json.loads(_attr(f, "metadata")) if "metadata" in f.attrs else {}
                grid = json.loads(_attr(f, "grid_shape"))
                n_nodes, eim_error = int(f.attrs["n_nodes"]), float(f.attrs["eim_error"])
            except (ValueError, KeyError, TypeError) as error:
                raise ReducedModelFileError(path, f"unreadable attributes: {error}") from error
        try:
            problem = problem_of_file(target, config, space, path)
        except CheckpointError as error:
            raise ReducedModelFileError(path, error.problem) from None
        layout = FieldLayout(n_nodes, arrays["basis/free"].astype(np.int64), tuple(grid) if grid else None)
        expected = problem.grid_layout()
        stored = (n_nodes, len(layout.free), layout.grid_shape)
        if expected is not None and stored != expected:
            raise ReducedModelFileError(
                path,
                f"the problem's grid (nodes, unknowns, shape) {expected} differs from the stored basis's {stored}",
            )
        model = cls(
            problem,
            arrays["operator/interpolation_matrix"],
            LocalEntries(arrays["operator/entry_weights"], arrays["operator/entry_points"]),
            arrays["rhs/interpolation_matrix"],
            LocalEntries(arrays["rhs/entry_weights"], arrays["rhs/entry_points"]),
            arrays["operator/reduced"],
            arrays["rhs/reduced"],
            arrays["estimator/R"],
            arrays["estimator/gram"],
            eim_error,
            arrays["basis/V"],
            layout,
            metadata,
            compressed,
        )
        problems = model._consistency_problems()
        if problems:
            raise ReducedModelFileError(path, "inconsistent datasets: " + "; ".join(problems))
        return model

    def _consistency_problems(self) -> list[str]:
        M, N = self.reduced_operator.shape[:2]
        Mf = self.reduced_rhs.shape[0]
        n_comp = Mf + N * M
        checks = [
            (self.reduced_operator.shape == (M, N, N), f"operator/reduced {self.reduced_operator.shape} is not (M, N, N)"),
            (self.operator_interpolation.shape == (M, M), f"operator/interpolation_matrix is not ({M}, {M})"),
            (self.operator_entries.weights.shape[0] == M, f"operator/entry_weights must have {M} rows"),
            (self.rhs_interpolation.shape == (Mf, Mf), f"rhs/interpolation_matrix is not ({Mf}, {Mf})"),
            (self.rhs_entries.weights.shape[0] == Mf, f"rhs/entry_weights must have {Mf} rows"),
            (self.reduced_rhs.shape == (Mf, N), f"rhs/reduced is not ({Mf}, {N})"),
            (self.residual_R.shape[1] == n_comp, f"estimator/R must have {n_comp} columns"),
            (self.residual_gram.shape == (n_comp, n_comp), f"estimator/gram is not ({n_comp}, {n_comp})"),
            (self.basis.shape[1] == N, f"basis/V must have {N} columns"),
            (self.basis.shape[0] == len(self.layout.free), "basis/V and basis/free disagree on the dimension"),
        ]
        if self.compressed is not None:
            checks.append((self.compressed.P.shape[1] == n_comp, f"estimator/compressed_P must have {n_comp} columns"))
            checks.append((self.compressed.scale.shape == (n_comp,), f"estimator/compressed_scale must have {n_comp} entries"))
        for matrix, name in ((self.operator_interpolation, "operator"), (self.rhs_interpolation, "rhs")):
            if matrix.size and not (np.allclose(np.diag(matrix), 1.0) and np.allclose(np.triu(matrix, 1), 0.0)):
                checks.append((False, f"{name}/interpolation_matrix is not unit lower triangular"))
        if self.operator_entries.weights.shape[1] != self.operator_entries.points.shape[0]:
            checks.append((False, "operator entry weights and points disagree"))
        return [message for ok, message in checks if not ok]


def is_reduced_model_file(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file with the reduced-model ``format`` attribute (no exception)."""
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return _attr(f, "format") == FORMAT
    except (OSError, TypeError, ValueError):
        return False


def _attr(f: h5py.File, name: str) -> Any:
    value = f.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialize {type(value).__name__}")
