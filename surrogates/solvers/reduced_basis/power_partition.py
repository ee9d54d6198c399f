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

**Homogeneous cover.** When ``A(t mu) = t A(mu)`` (the thermal block), ``log det A(mu) = log det A(mu')
- N_h log sigma`` for ``mu' = sigma mu``: a model needs to serve ``mu`` only up to a scalar factor.
In ``v = log(mu / lower) / h`` (``h = log(ratio) / s``) the cube ``b + [0, 1]^P`` (a sub-box of ratio
``e^h``) then serves every ``v`` with ``max(v - b) - min(v - b) <= 1``, shifted along the diagonal
into the cube: a prism whose section across the diagonal has ``P`` times the area of the section of
the lattice ``Z^P / (1, ..., 1)``. The cubes with ``sum(b) = k (mod P)`` tile ``R^P`` this way (one
class per diagonal shift), so about ``s^(P-1)`` of them cover the box instead of ``s^P`` sub-boxes
(43 instead of 81 for ``P = 4, s = 3``), at the same ratio per model. Offline this needs the power
points of cubes that may reach outside the parameter box (any positive ``mu`` gives an SPD ``A``).
"""

from __future__ import annotations

import copy
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
    cells: np.ndarray | None = None
    step: float | None = None

    def __post_init__(self):
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if self.edges.ndim != 2 or self.edges.shape[1] < 2 or np.any(np.diff(self.edges, axis=1) <= 0):
            raise ValueError("edges must have shape (P, s + 1), s >= 1, increasing along each row")
        if self.cells is None:
            if len(self.models) != self.splits**self.edges.shape[0]:
                raise ValueError(f"{len(self.models)} models for {self.splits}^{self.edges.shape[0]} sub-boxes")
            return
        self.cells = np.asarray(self.cells, dtype=np.int64)
        if self.cells.shape != (len(self.models), self.edges.shape[0]):
            raise ValueError(f"cells must have shape ({len(self.models)}, {self.edges.shape[0]}): one per model")
        if self.step is None or not (np.isfinite(self.step) and self.step > 0) or np.any(self.edges[:, 0] <= 0):
            raise ValueError("a homogeneous cover needs a positive step and positive lower bounds")
        self.step = float(self.step)

    @property
    def homogeneous(self) -> bool:
        """Whether the models serve the parameters up to a scalar factor (the cover of cubes)."""
        return self.cells is not None

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
        """Sub-box of each parameter ``(B, P) -> (B,)``; a parameter on an inner edge goes to the upper sub-box.

        For the homogeneous cover: the cube whose prism holds ``v`` most centrally (spread of ``v - b`` smallest).
        """
        mus = self.problem.parameter_space.check(mus)
        if self.homogeneous:
            return self._cover(mus)[0]
        index = np.zeros(len(mus), dtype=np.int64)
        for d in range(self.edges.shape[0]):
            piece = np.searchsorted(self.edges[d, 1:-1], mus[:, d], side="right")
            index = index * self.splits + piece
        return index

    def _cover(self, mus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cube of each parameter and ``sigma`` with ``sigma mu`` in that cube, ``(B,)`` each."""
        v = np.log(mus / self.edges[:, 0]) / self.step  # (B, P)
        d = v[:, None, :] - self.cells[None]  # (B, C, P)
        spread = d.max(axis=2) - d.min(axis=2)
        cell = spread.argmin(axis=1)
        if np.any(spread[np.arange(len(mus)), cell] > 1 + 1e-9):
            raise ValueError("a parameter lies in no cube of the cover (the cells do not cover the box)")
        shift = d[np.arange(len(mus)), cell].min(axis=1)  # v - shift - b in [0, 1]^P
        return cell, np.exp(-self.step * shift)

    def log_det(self, mus: np.ndarray, bound: bool = True) -> LogDetEstimate:
        """``log det A(mu)`` for ``(B, P)`` from each parameter's sub-box model; the bound is that model's."""
        mus = self.problem.parameter_space.check(mus)
        if self.homogeneous:
            return self._log_det_cover(mus, bound)
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

    def _log_det_cover(self, mus: np.ndarray, bound: bool) -> LogDetEstimate:
        # A(sigma mu) = sigma A(mu): the cube's model at beta(sigma mu) = sigma beta(mu), minus N_h log sigma
        cells, sigma = self._cover(mus)
        system = self.system
        beta = system.operator.weights(system.operator_entries(mus)) * sigma[:, None]
        value = np.empty(len(mus))
        error = np.empty(len(mus)) if bound else None
        lebesgue = np.empty(len(mus)) if bound else None
        for cell in np.unique(cells):
            rows = np.flatnonzero(cells == cell)
            part = self.models[cell].log_det_weights(beta[rows], bound, eim_scale=sigma[rows])
            value[rows] = part.value - self.problem.dim * np.log(sigma[rows])
            if bound:
                error[rows], lebesgue[rows] = part.bound, part.lebesgue
        return LogDetEstimate(value, error, lebesgue)

    def solve(self, mus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A(mu)^-1 b(mu)`` and its bound, ``(B, P) -> ((B, N_h), (B,))``, from each parameter's sub-box."""
        if self.homogeneous:
            raise ValueError("the homogeneous cover gives log-determinants only: build a tensor partition for solves")
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


def is_homogeneous(problem: DiffusionProblem, rng: np.random.Generator, n: int = 8) -> bool:
    """Whether the local coefficients satisfy ``c(t mu) = t c(mu)`` (to round-off) at random ``mu`` and ``t``."""
    space = problem.parameter_space
    if np.any(np.asarray(space.lower) <= 0):
        return False
    mus = space.sample_uniform(n, rng)
    t = np.exp(rng.uniform(-2.0, 2.0, size=(n, 1)))
    c, scaled = problem.local_coefficients(mus), problem.local_coefficients(t * mus)
    return bool(np.all(np.abs(scaled - t * c) <= 1e-12 * np.abs(t * c).max(axis=1, keepdims=True)))


def cover_cells(extent: np.ndarray, splits: int) -> np.ndarray:
    """Lattice cubes ``b + [0, 1]^P`` whose diagonal prisms cover ``[0, extent]`` (``(P,)``, in steps), ``(C, P)``.

    One representative (``min(b) = 0``) per diagonal class, from the residue ``sum(b) = k (mod P)``
    with the fewest cubes that meet the box's prism: ``max_i(-b_i - 1) < min_i(extent_i - b_i)``.
    """
    P = len(extent)
    top = int(np.ceil(extent.max())) + 1
    grid = np.stack(np.meshgrid(*[np.arange(top + 1)] * P, indexing="ij"), axis=-1).reshape(-1, P)
    grid = grid[grid.min(axis=1) == 0]
    meets = (-grid - 1).max(axis=1) < (extent - grid).min(axis=1)
    grid = grid[meets]
    options = [grid[grid.sum(axis=1) % P == k] for k in range(P)]
    return min(options, key=len)


def build_cover(eim: PowerLimitsEIM, problem: DiffusionProblem, splits: int) -> PowerLimitPartition:
    """The homogeneous cover (see the module notes): one :meth:`PowerLimitsEIM.build_box` per cube.

    Raises ``ValueError`` unless ``A(t mu) = t A(mu)`` with positive lower bounds.
    """
    start = time.perf_counter()
    eim = copy.copy(eim)
    eim.with_inverse = False  # the cover serves log-determinants only
    rng = np.random.default_rng(eim.seed)
    if not is_homogeneous(problem, np.random.default_rng(eim.seed + 1)):
        raise ValueError("the homogeneous cover needs A(t mu) = t A(mu) and positive parameters")
    system, rows, groups = eim.prepare(problem, rng)
    space = problem.parameter_space
    lower, upper = np.asarray(space.lower, dtype=np.float64), np.asarray(space.upper, dtype=np.float64)
    ratios = np.log(upper / lower)
    step = float(ratios.max()) / int(splits)
    cells = cover_cells(ratios / step, int(splits))
    models = []
    for i, b in enumerate(cells):
        cube = lower * np.exp(step * b), lower * np.exp(step * (b + 1))
        models.append(eim.build_box(system, rows, groups, *cube, rng))
        if eim.progress:
            print(f"cube {i + 1} / {len(cells)}: {models[-1].size} power points", flush=True)
    info = {
        "splits": int(splits),
        "sub_boxes": len(models),
        "cover": "homogeneous",
        "power_points": sum(model.size for model in models),
        "offline_seconds": time.perf_counter() - start,
    }
    return PowerLimitPartition(np.stack([lower, upper], axis=1), models, info, cells, step)
