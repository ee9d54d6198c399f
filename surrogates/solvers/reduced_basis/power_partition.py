"""Power-limit models on a partition of the parameter box: one :class:`~.power_limits.PowerLimitModel` per sub-box.

The degree ``K`` needed for a given accuracy is set by the spectral ratio ``b / a`` of the interval of
the bound (``1 / sigma = (sqrt(b) - sqrt(a)) / (sqrt(b) + sqrt(a))`` per degree). With the reference
``X_r = sum_k r_k T_k`` of a sub-box (:meth:`~.power_limits.PowerLimitsEIM.build_box`), the interval
of ``X_r^-1/2 A(mu) X_r^-1/2`` is ``[min_u c_u(mu) / r_u, max_u c_u(mu) / r_u]``: its ratio is the
largest ratio ``max c_u / min c_u`` of one coefficient over the sub-box, not the spread of the
coefficients across blocks. Splitting every parameter range ``[lo, hi]`` into ``s`` pieces of equal
ratio ``(hi / lo)^(1 / s)`` (geometric edges; uniform ones when ``lo <= 0``) divides that ratio by
``s`` in the exponent for coefficients linear in ``mu`` (the thermal block: ratio 10 -> ``10^(1/s)``),
at ``s^P`` times the offline factorizations and the same online cost: the parameter's sub-box is
found by a binary search per component, and that sub-box's model gives the value and the bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from surrogates.solvers.reduced_basis.power_limits import LogDetEstimate, PowerLimitModel, PowerLimitsEIM
from surrogates.solvers.reduced_basis.problem import DiffusionProblem


def box_edges(lower: np.ndarray, upper: np.ndarray, splits: int) -> np.ndarray:
    """Edges of ``splits`` pieces per component, geometric where ``lower > 0``, shape ``(P, splits + 1)``."""
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if int(splits) != splits or splits < 1:
        raise ValueError(f"splits must be a positive integer, got {splits}")
    t = np.linspace(0.0, 1.0, int(splits) + 1)
    positive = lower > 0
    safe_lower = np.where(positive, lower, 1.0)
    geometric = safe_lower[:, None] * (upper / safe_lower)[:, None] ** t
    edges = np.where(positive[:, None], geometric, lower[:, None] + (upper - lower)[:, None] * t)
    edges[:, 0], edges[:, -1] = lower, upper  # exact ends, whatever the rounding of the powers
    return edges


@dataclass
class PowerLimitPartition:
    """Online evaluator over a tensor partition of the parameter box.

    Attributes
    ----------
    edges : np.ndarray
        Sub-box edges per parameter, shape ``(P, s + 1)``, increasing.
    models : list[PowerLimitModel]
        One per sub-box, ``s^P`` of them, the sub-box multi-index in C order (last parameter fastest).
    info : dict
        Offline facts (timings, sizes).
    """

    edges: np.ndarray
    models: list[PowerLimitModel]
    info: dict

    def __post_init__(self):
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if self.edges.ndim != 2 or self.edges.shape[1] < 2 or np.any(np.diff(self.edges, axis=1) <= 0):
            raise ValueError("edges must have shape (P, s + 1), s >= 1, increasing along each row")
        if len(self.models) != self.splits**self.edges.shape[0]:
            raise ValueError(f"{len(self.models)} models for {self.splits}^{self.edges.shape[0]} sub-boxes")

    @property
    def splits(self) -> int:
        return self.edges.shape[1] - 1

    @property
    def system(self):
        return self.models[0].system

    @property
    def problem(self) -> DiffusionProblem:
        return self.models[0].system.problem

    @property
    def degree(self) -> int:
        return self.models[0].degree

    @property
    def size(self) -> int:
        """Power points of one sub-box (what one query uses)."""
        return max(model.size for model in self.models)

    @property
    def total_size(self) -> int:
        """Power points (factorizations) over all sub-boxes."""
        return sum(model.size for model in self.models)

    @property
    def solutions(self):
        return self.models[0].solutions

    def locate(self, mus: np.ndarray) -> np.ndarray:
        """Sub-box of each parameter ``(B, P) -> (B,)``; a parameter on an inner edge goes to the upper sub-box."""
        mus = self.problem.parameter_space.check(mus)
        index = np.zeros(len(mus), dtype=np.int64)
        for d in range(self.edges.shape[0]):
            piece = np.searchsorted(self.edges[d, 1:-1], mus[:, d], side="right")
            index = index * self.splits + piece
        return index

    def log_det(self, mus: np.ndarray, bound: bool = True) -> LogDetEstimate:
        """``log det A(mu)`` for ``(B, P)`` from each parameter's sub-box model; the bound is that model's."""
        mus = self.problem.parameter_space.check(mus)
        if len(self.models) == 1:
            return self.models[0].log_det(mus, bound)
        boxes = self.locate(mus)
        value = np.empty(len(mus))
        error = np.empty(len(mus)) if bound else None
        lebesgue = np.empty(len(mus)) if bound else None
        for box in np.unique(boxes):
            rows = np.flatnonzero(boxes == box)
            part = self.models[box].log_det(mus[rows], bound)
            value[rows] = part.value
            if bound:
                error[rows], lebesgue[rows] = part.bound, part.lebesgue
        return LogDetEstimate(value, error, lebesgue)

    def solve(self, mus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A(mu)^-1 b(mu)`` and its bound, ``(B, P) -> ((B, N_h), (B,))``, from each parameter's sub-box."""
        mus = self.problem.parameter_space.check(mus)
        boxes = self.locate(mus)
        u, bound = np.empty((len(mus), self.problem.dim)), np.empty(len(mus))
        for box in np.unique(boxes):
            rows = np.flatnonzero(boxes == box)
            u[rows], bound[rows] = self.models[box].solve(mus[rows])
        return u, bound

    def save(self, path):
        """Write to one HDF5 file (:func:`~.power_io.save_partition`)."""
        from surrogates.solvers.reduced_basis.power_io import save_partition

        return save_partition(self, path)

    @classmethod
    def load(cls, path) -> "PowerLimitPartition":
        """Read a file written by :meth:`save` (:func:`~.power_io.load_partition`)."""
        from surrogates.solvers.reduced_basis.power_io import load_partition

        return load_partition(path)


def build_partition(eim: PowerLimitsEIM, problem: DiffusionProblem, splits: int) -> PowerLimitPartition:
    """One operator EIM for the whole box, then :meth:`PowerLimitsEIM.build_box` on each of ``splits^P`` sub-boxes.

    With ``splits = 1`` the single model is the one :meth:`PowerLimitsEIM.build` returns (same random stream).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(eim.seed)
    system, rows, groups = eim.prepare(problem, rng)
    space = problem.parameter_space
    edges = box_edges(np.asarray(space.lower), np.asarray(space.upper), splits)
    P = space.dim
    models = []
    for box in range(int(splits) ** P):
        piece = np.unravel_index(box, (int(splits),) * P)
        lower = edges[np.arange(P), piece]
        upper = edges[np.arange(P), np.asarray(piece) + 1]
        models.append(eim.build_box(system, rows, groups, lower, upper, rng))
        if eim.progress:
            print(f"sub-box {box + 1} / {int(splits) ** P}: {models[-1].size} power points", flush=True)
    info = {
        "splits": int(splits),
        "sub_boxes": len(models),
        "power_points": sum(model.size for model in models),
        "offline_seconds": time.perf_counter() - start,
    }
    return PowerLimitPartition(edges, models, info)
