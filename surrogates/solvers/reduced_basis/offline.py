"""The offline stage in one call: EIM of the operator and right-hand side, then the weak greedy.

:class:`RBEIM` is what ``conf/solver/rb_eim.yaml`` instantiates; ``RBEIM(...).build(problem)``
returns a :class:`~surrogates.solvers.reduced_basis.model.ReducedModel`.
"""

from __future__ import annotations

import time

import numpy as np

from surrogates.solvers.reduced_basis.estimators import ESTIMATORS
from surrogates.solvers.reduced_basis.greedy import weak_greedy
from surrogates.solvers.reduced_basis.model import ReducedModel
from surrogates.solvers.reduced_basis.problem import DiffusionProblem
from surrogates.solvers.reduced_basis.reductor import EIMSystem, RBReductor


class RBEIM:
    """Reduced basis with the empirical interpolation method: offline settings.

    Parameters
    ----------
    eim_training_size
        Random parameters on which the EIM greedy samples ``A(mu)`` and ``b(mu)``, besides the
        ``2^P`` vertices of the parameter box (when ``2^P <= 1024``).
    eim_max_terms
        Largest number of EIM terms (``None``: until ``eim_rtol``).
    eim_rtol
        EIM stops when the largest entry error is below ``eim_rtol`` times the largest entry.
    eim_check_size
        Further random parameters on which ``eps_EIM`` (the EIM operator error in the ``X -> X'``
        norm, which enters the coercivity bound) is measured.
    eim_safety_factor
        ``eps_EIM`` is the measured maximum times this factor.
    training_set
        ``"grid"``: ``training_size`` values per parameter component (tensor grid, as pyMOR's
        thermal-block demo); ``"random"``: ``training_size`` uniform parameters.
    training_size
        See ``training_set``.
    max_basis_size
        Largest reduced basis.
    greedy_rtol, greedy_atol
        Greedy stops when the largest bound is below ``greedy_rtol`` times the first one, or below ``greedy_atol``.
    estimator
        ``"stable"`` or ``"classic"`` residual norm in the greedy.
    compression_rtol
        After the greedy, the model's compressed estimator (a low-rank form of the stable one that
        stays an upper bound, see :meth:`ReducedModel.compress`) is computed with this tolerance;
        ``None``: not computed (it is then computed on the first ``estimator="compressed"`` query).
    seed
        Seed of the random parameter sets, ``0 <= seed < 2**32``.
    progress
        Print the greedy's errors.
    """

    def __init__(
        self,
        eim_training_size: int = 200,
        eim_max_terms: int | None = None,
        eim_rtol: float = 1e-10,
        eim_check_size: int = 100,
        eim_safety_factor: float = 2.0,
        training_set: str = "random",
        training_size: int = 500,
        max_basis_size: int = 30,
        greedy_rtol: float | None = 1e-10,
        greedy_atol: float | None = None,
        estimator: str = "stable",
        compression_rtol: float | None = 1e-9,
        seed: int = 0,
        progress: bool = False,
    ):
        if training_set not in ("grid", "random"):
            raise ValueError(f"training_set must be 'grid' or 'random', got {training_set!r}")
        if estimator not in ESTIMATORS or estimator == "compressed":
            raise ValueError(f"estimator must be 'stable' or 'classic', got {estimator!r}")
        if max_basis_size < 0 or eim_training_size < 1 or training_size < 1:
            raise ValueError("sizes must be positive")
        self.eim_training_size = int(eim_training_size)
        self.eim_max_terms = None if eim_max_terms is None else int(eim_max_terms)
        self.eim_rtol = float(eim_rtol)
        self.eim_check_size = int(eim_check_size)
        self.eim_safety_factor = float(eim_safety_factor)
        self.training_set = training_set
        self.training_size = int(training_size)
        self.max_basis_size = int(max_basis_size)
        self.greedy_rtol = greedy_rtol
        self.greedy_atol = greedy_atol
        self.estimator = estimator
        self.compression_rtol = None if compression_rtol is None else float(compression_rtol)
        self.seed = int(seed)
        if not 0 <= self.seed < 2**32:
            # one 32-bit word of the streams [seed, k]: a larger seed would spread over two words and seed
            # 2**32 + s would draw seed s's sets in other roles (SeedSequence drops trailing zero words)
            raise ValueError(f"seed must be in [0, 2**32), got {seed}")
        self.progress = bool(progress)

    def settings(self) -> dict:
        return {key: value for key, value in vars(self).items()}

    def greedy_training_set(self, problem: DiffusionProblem) -> np.ndarray:
        space = problem.parameter_space
        if self.training_set == "grid":
            return space.grid(self.training_size)
        return space.sample_uniform(self.training_size, np.random.default_rng([self.seed, 1]))

    def build_system(self, problem: DiffusionProblem) -> EIMSystem:
        """The EIM stage alone."""
        rng = np.random.default_rng([self.seed, 0])
        space = problem.parameter_space
        # the box's vertices (up to 1024) join the random samples: a non-affine coefficient is often
        # hardest to interpolate there, and random parameters almost never come close to them
        training = np.concatenate([space.sample_uniform(self.eim_training_size, rng), space.vertices()])
        return EIMSystem.build(
            problem,
            training,
            max_terms=self.eim_max_terms,
            rtol=self.eim_rtol,
            check_set=space.sample_uniform(self.eim_check_size, rng),
            safety_factor=self.eim_safety_factor,
        )

    def build(self, problem: DiffusionProblem) -> ReducedModel:
        """Run the whole offline stage for ``problem``; the model's metadata records what happened."""
        start = time.perf_counter()
        system = self.build_system(problem)
        eim_seconds = time.perf_counter() - start
        reductor = RBReductor(system)
        greedy = weak_greedy(
            reductor,
            self.greedy_training_set(problem),
            self.max_basis_size,
            atol=self.greedy_atol,
            rtol=self.greedy_rtol,
            estimator=self.estimator,
            progress=self.progress,
        )
        metadata = {
            "pde": getattr(problem, "name", type(problem).__name__),
            "dataset_inputs": list(getattr(problem, "inputs", ())),
            "full_dimension": problem.dim,
            "settings": self.settings(),
            "eim": {
                "operator_terms": system.operator.size,
                "rhs_terms": system.rhs.size,
                "operator_errors": system.operator.eim.errors.tolist(),
                "operator_mus": system.operator.mus.tolist(),
                "eim_error": system.eim_error,
                "seconds": eim_seconds,
            },
            "greedy": {
                "max_errors": greedy.max_errors,
                "selected": greedy.selected.tolist(),
                "reason": greedy.reason,
                "full_solves": greedy.full_solves,
                "seconds": greedy.seconds,
                "elapsed": greedy.elapsed,
            },
        }
        model = reductor.reduce(metadata)
        if self.compression_rtol is not None:
            started = time.perf_counter()
            model.compress(rtol=self.compression_rtol)
            model.metadata["compression"]["seconds"] = time.perf_counter() - started
        model.metadata["offline_seconds"] = time.perf_counter() - start
        return model
