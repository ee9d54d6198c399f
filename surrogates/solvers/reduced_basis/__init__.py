"""Reduced basis method with the (nonintrusive) empirical interpolation method.

Offline: :class:`RBEIM` runs the EIM of the assembled operator and right-hand side
(:mod:`.eim`), then the weak greedy (:mod:`.greedy`) that grows the basis (:mod:`.reductor`) with
the error bound (:mod:`.estimators`). Online: :class:`ReducedModel` (:mod:`.model`) solves and bounds
the error at a cost independent of the full dimension, and saves to / loads from one HDF5 file.
Problems implement :class:`DiffusionProblem` (:mod:`.problem`). :class:`PowerLimitsEIM`
(:mod:`.power_limits`) builds nonintrusive log-determinants and inverses of affine SPD operators with
error bounds. See ``docs/reduced_basis.md``.
"""

from surrogates.solvers.reduced_basis.eim import EIMBasis, FunctionEIM, ParametricEIM, eim_greedy
from surrogates.solvers.reduced_basis.greedy import GreedyResult, weak_greedy
from surrogates.solvers.reduced_basis.model import (
    ReducedModel,
    ReducedModelFileError,
    ReducedSolution,
    is_reduced_model_file,
)
from surrogates.solvers.reduced_basis.offline import RBEIM
from surrogates.solvers.reduced_basis.power_limits import LogDetEstimate, PowerLimitModel, PowerLimitsEIM
from surrogates.solvers.reduced_basis.problem import DiffusionProblem, ParameterSpace
from surrogates.solvers.reduced_basis.reductor import EIMSystem, ExtensionError, RBReductor

__all__ = [
    "DiffusionProblem",
    "EIMBasis",
    "EIMSystem",
    "ExtensionError",
    "FunctionEIM",
    "GreedyResult",
    "LogDetEstimate",
    "ParameterSpace",
    "ParametricEIM",
    "PowerLimitModel",
    "PowerLimitsEIM",
    "RBEIM",
    "RBReductor",
    "ReducedModel",
    "ReducedModelFileError",
    "ReducedSolution",
    "eim_greedy",
    "is_reduced_model_file",
    "weak_greedy",
]
