"""The thermal block: ``-div(a grad u) = 1`` on the unit square, ``a = mu_q`` on block ``q``, ``u = 0`` on the boundary.

The square is cut into ``blocks[0] x blocks[1]`` rectangles; block ``q = ix + iy * blocks[0]`` covers
``[ix / bx, (ix + 1) / bx) x [iy / by, (iy + 1) / by)`` (the last block of a row or column includes
the right or top edge) and has conductivity ``mu_q`` in ``[mu_min, mu_max]`` (pyMOR's thermal-block
benchmark: 2 x 2 blocks, ``mu`` in ``[0.1, 1]``).

The operator is affine, ``A(mu) = sum_q mu_q A_q``, as long as every local coefficient sees one block:
true for P1 elements (centroid values) and for finite differences with the face-``"midpoint"`` rule
(the default here); the ``"harmonic"`` face rule mixes blocks across their interfaces and is not
affine. The coercivity constant in the ``H^1_0`` semi-norm is at least ``min_q mu_q`` (exact bound).
"""

from __future__ import annotations

import numpy as np

from surrogates.pdes.parametric_diffusion import ParametricDiffusionPDE
from surrogates.solvers.reduced_basis.problem import ParameterSpace


class ThermalBlock(ParametricDiffusionPDE):
    """Thermal block with ``blocks[0] * blocks[1]`` parameters ``mu_0, mu_1, ...``.

    Parameters
    ----------
    blocks
        ``(bx, by)`` blocks in x and y.
    mu_min, mu_max
        Range of every block's conductivity.
    resolution, discretization, fd_rule, mesh_path, rtol, preconditioner
        See :class:`~surrogates.solvers.reduced_basis.problem.DiffusionProblem`.
    """

    name = "thermal_block"
    default_fd_rule = "midpoint"

    def __init__(
        self,
        blocks: tuple[int, int] | list[int] = (2, 2),
        mu_min: float = 0.1,
        mu_max: float = 1.0,
        resolution: int = 64,
        discretization: str = "fd",
        fd_rule: str | None = None,
        mesh_path: str | None = None,
        rtol: float = 1e-12,
        preconditioner: str = "amg",
    ):
        super().__init__(resolution, discretization, fd_rule, mesh_path, rtol, preconditioner)
        bx, by = (int(b) for b in blocks)
        if bx < 1 or by < 1:
            raise ValueError(f"blocks must be positive, got {blocks}")
        if not 0 < mu_min <= mu_max:
            raise ValueError(f"need 0 < mu_min <= mu_max, got {mu_min}, {mu_max}")
        self.blocks = (bx, by)
        self.mu_min, self.mu_max = float(mu_min), float(mu_max)
        n = bx * by
        self.parameter_space = ParameterSpace(tuple(f"mu_{q}" for q in range(n)), (self.mu_min,) * n, (self.mu_max,) * n)
        self.long_names = {f"mu_{q}": f"conductivity of block {q}" for q in range(n)}

    def config(self) -> dict:
        return {**super().config(), "blocks": list(self.blocks), "mu_min": self.mu_min, "mu_max": self.mu_max}

    def block_index(self, points: np.ndarray) -> np.ndarray:
        """Block ``q`` of each point ``(n, 2)``, int64 ``(n,)``."""
        bx, by = self.blocks
        ix = np.clip(np.floor(points[:, 0] * bx), 0, bx - 1).astype(np.int64)
        iy = np.clip(np.floor(points[:, 1] * by), 0, by - 1).astype(np.int64)
        return ix + iy * bx

    def coefficient(self, points: np.ndarray, mus: np.ndarray) -> np.ndarray:
        return np.atleast_2d(mus)[:, self.block_index(np.asarray(points))]

    def coefficient_lower_bound(self, mus: np.ndarray) -> np.ndarray:
        return np.atleast_2d(mus).min(axis=1)
