"""Weak greedy construction of the reduced basis.

At each step the current reduced model is solved on the whole training set (online cost per
parameter, batched), the parameter with the largest error *bound* is selected, the full EIM system is
solved there with the project's PCG, and the solution is added to the basis. This is the weak greedy
of Binev et al.: the bound stands in for the true error, so only one full solve is needed per basis
vector. With ``use_estimator=False`` the true error (energy norm of the EIM system) is used instead;
this needs a full solve per training parameter and is meant for small checks: by Galerkin optimality
on nested spaces the maximum energy error can then only decrease.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from surrogates.solvers.reduced_basis.reductor import ExtensionError, RBReductor


@dataclass
class GreedyResult:
    """History of a greedy run.

    Attributes
    ----------
    max_errors : list of float
        Largest error (bound or true error) over the training set before each extension, and after
        the last one: ``len == extensions + 1`` unless a tolerance stopped the loop first.
    selected : np.ndarray
        Parameters added to the basis, in order, shape ``(N, P)``.
    reason : str
        Why the loop stopped.
    seconds : float
    elapsed : list of float
        Seconds since the start when each entry of ``max_errors`` was known (the offline time of
        the model of each basis size).
    full_solves : int
    """

    max_errors: list[float] = field(default_factory=list)
    selected: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    reason: str = ""
    seconds: float = 0.0
    elapsed: list[float] = field(default_factory=list)
    full_solves: int = 0


def weak_greedy(
    reductor: RBReductor,
    training_set: np.ndarray,
    max_basis_size: int,
    atol: float | None = None,
    rtol: float | None = None,
    estimator: str = "stable",
    use_estimator: bool = True,
    progress: bool = False,
) -> GreedyResult:
    """Extend ``reductor``'s basis greedily over ``training_set`` ``(n, P)``.

    Parameters
    ----------
    max_basis_size
        Stop when the basis has this many vectors.
    atol, rtol
        Stop when the largest error is ``<= atol`` or ``<= rtol`` times the first one (basis size 0).
    estimator
        ``"stable"`` or ``"classic"`` residual norm for the bound.
    use_estimator
        ``False``: select on the true energy-norm error (a full solve per training parameter).
    """
    start = time.perf_counter()
    training_set = np.atleast_2d(np.asarray(training_set, dtype=np.float64))
    result = GreedyResult()
    selected = []
    truth = _Truth(reductor, training_set) if not use_estimator else None
    if truth is not None:
        result.full_solves += len(training_set)
    while True:
        model = reductor.reduce(with_basis=False)
        if use_estimator:
            errors = model.solve(training_set, estimator=estimator, check=False).bound
        else:
            errors = truth.errors(model, reductor.basis)
        worst = int(np.argmax(errors))
        result.max_errors.append(float(errors[worst]))
        result.elapsed.append(time.perf_counter() - start)
        if progress:
            print(f"  basis size {reductor.size:3d}: max error {errors[worst]:.3e}", flush=True)
        if reductor.size >= max_basis_size:
            result.reason = f"basis size {max_basis_size} reached"
            break
        if atol is not None and errors[worst] <= atol:
            result.reason = f"absolute tolerance {atol:g} reached"
            break
        if rtol is not None and errors[worst] <= rtol * result.max_errors[0]:
            result.reason = f"relative tolerance {rtol:g} reached"
            break
        mu = training_set[worst]
        u = truth.solutions[worst] if truth is not None else reductor.system.solve(mu)
        result.full_solves += truth is None
        try:
            reductor.extend(u)
        except ExtensionError as error:
            result.reason = f"extension failed: {error}"
            break
        selected.append(mu)
    result.selected = np.array(selected).reshape(len(selected), training_set.shape[1])
    result.seconds = time.perf_counter() - start
    return result


class _Truth:
    """Full solutions of the EIM system on the training set, for true-error greedy steps."""

    def __init__(self, reductor: RBReductor, training_set: np.ndarray):
        system = reductor.system
        self.training_set = training_set
        self.solutions = np.stack([system.solve(mu) for mu in training_set])
        self.matrices = [system.matrix(mu) for mu in training_set]

    def errors(self, model, basis: np.ndarray) -> np.ndarray:
        c = model.solve(self.training_set, check=False).coefficients
        e = self.solutions - c @ basis.T
        return np.sqrt(np.maximum([ei @ (A @ ei) for ei, A in zip(e, self.matrices)], 0.0))
