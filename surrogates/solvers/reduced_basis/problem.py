"""Parametrized diffusion problems as the reduced basis method sees them: assembled matrices and entries.

The problem is ``-div(a(x; mu) grad u) = f(x; mu)`` with ``u = 0`` on the boundary. The reduced
basis code (EIM, greedy, reductor) never looks inside the assembly; it only asks a problem for

- the assembled operator ``A(mu)`` (as data on a fixed sparsity pattern) and right-hand side ``b(mu)``,
- a few entries of ``A(mu)`` and ``b(mu)`` (the EIM magic points), cheaply, for any ``mu``,
- the inner product ``X`` of the error norm, and a lower bound of the coercivity constant of ``A(mu)``
  with respect to ``X``,

which is the nonintrusive setting of Casenave et al. Entries are cheap because both discretizations
are *local*: every matrix entry is a fixed linear combination of a few local coefficients (one per
grid face for finite differences, one per triangle for P1 elements), ``data = S c(mu)``, and each
local coefficient is the diffusion coefficient at one point (face midpoint, triangle centroid) or
the harmonic mean of its values at two nodes (the face rule of
:func:`surrogates.solvers.finite_differences.diffusion_operator`). ``S`` is built once; an entry costs
a few evaluations of ``a``.

With the unit coefficient ``c_k(1)`` the same map gives ``X = S c(1)``: the discrete ``H^1_0``
semi-inner product (5-point Laplacian, or the P1 stiffness matrix). Each local term is positive
semidefinite, so ``v^T A(mu) v >= min_k c_k(mu) / c_k(1) * v^T X v >= inf_x a(x; mu) * ||v||_X^2``:
the coercivity lower bound is the minimum of the coefficient (the "min-theta" bound of affine
problems, here for any coefficient).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from surrogates.solvers import fem
from surrogates.solvers.sparse_cg import PRECONDITIONERS, solve_spd

FD_RULES = ("harmonic", "midpoint")
DISCRETIZATIONS = ("fd", "p1")


# -- parameter domain -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterSpace:
    """A box of parameters ``lower <= mu <= upper``.

    Parameters
    ----------
    names
        One name per parameter component, e.g. ``("mu_0", "mu_1")``.
    lower, upper
        Bounds, shape ``(P,)``.
    """

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self):
        if not (len(self.names) == len(self.lower) == len(self.upper)) or not self.names:
            raise ValueError("names, lower and upper must have the same, non-zero length")
        if any(lo > hi for lo, hi in zip(self.lower, self.upper)):
            raise ValueError(f"lower bounds {self.lower} exceed upper bounds {self.upper}")

    @property
    def dim(self) -> int:
        return len(self.names)

    def sample_uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` parameters drawn uniformly in the box, shape ``(n, P)``."""
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        return lo + (hi - lo) * rng.random((int(n), self.dim))

    def grid(self, per_dim: int) -> np.ndarray:
        """Tensor grid with ``per_dim`` equispaced values per component, shape ``(per_dim^P, P)``."""
        axes = [np.linspace(lo, hi, int(per_dim)) for lo, hi in zip(self.lower, self.upper)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.dim)

    def vertices(self, limit: int = 1024) -> np.ndarray:
        """The ``2^P`` vertices of the box, shape ``(2^P, P)``; none (``(0, P)``) when ``2^P > limit``."""
        if 2**self.dim > limit:
            return np.zeros((0, self.dim))
        return self.grid(2) if self.dim else np.zeros((0, 0))

    def check(self, mus: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
        """Validate parameters: returns them as ``(B, P)`` float64, clipped onto the box within ``rtol``.

        Raises
        ------
        ValueError
            On a wrong shape, a non-finite value or a component outside the box (beyond ``rtol`` of its width).
        """
        mus = np.atleast_2d(np.asarray(mus, dtype=np.float64))
        if mus.ndim != 2 or mus.shape[1] != self.dim:
            raise ValueError(f"parameters must have shape (B, {self.dim}) for {list(self.names)}, got {mus.shape}")
        if not np.all(np.isfinite(mus)):
            raise ValueError("parameters must be finite")
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        slack = rtol * np.maximum(hi - lo, np.abs(hi))
        bad = (mus < lo - slack) | (mus > hi + slack)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"parameter {self.names[col]} = {mus[row, col]:g} (sample {row}) is outside the domain "
                f"[{lo[col]:g}, {hi[col]:g}] the reduced model was built for"
            )
        return np.clip(mus, lo, hi)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "lower": list(self.lower), "upper": list(self.upper)}

    @classmethod
    def from_dict(cls, d: dict) -> "ParameterSpace":
        return cls(tuple(d["names"]), tuple(float(v) for v in d["lower"]), tuple(float(v) for v in d["upper"]))


# -- local assembly ---------------------------------------------------------------------------------
def _local_values(field, points: np.ndarray, mus: np.ndarray) -> np.ndarray:
    """Local coefficients from their evaluation points ``(J, E, 2)``: value (``E = 1``) or harmonic mean (``E = 2``)."""
    J, E, _ = points.shape
    values = field(points.reshape(J * E, 2), mus).reshape(len(mus), J, E)
    return values[..., 0] if E == 1 else 2.0 * values[..., 0] * values[..., 1] / (values[..., 0] + values[..., 1])


@dataclass
class LocalEntries:
    """Selected entries of an assembled object as a function of the coefficient: ``entries = W c``.

    Attributes
    ----------
    weights : np.ndarray
        Shape ``(p, J)``: entry ``i`` is ``sum_j weights[i, j] c_j``.
    points : np.ndarray
        Shape ``(J, E, 2)``: where the ``J`` local coefficients evaluate the field (``E = 1``: the value
        at one point; ``E = 2``: the harmonic mean of the values at two points).
    """

    weights: np.ndarray
    points: np.ndarray

    def evaluate(self, field, mus: np.ndarray) -> np.ndarray:
        """Entries for each parameter: ``field(points (n, 2), mus (B, P)) -> (B, n)``; returns ``(B, p)``."""
        return _local_values(field, self.points, mus) @ self.weights.T


class LocalAssembly:
    """A sparse matrix (or vector) that is linear in local coefficients: ``data = S c`` on a fixed pattern.

    Parameters
    ----------
    rows, cols
        Entry positions of the contributions, shape ``(n_contrib,)`` (``cols`` all zero for a vector).
    local
        Which local coefficient each contribution multiplies, shape ``(n_contrib,)``.
    values
        Contribution weights, shape ``(n_contrib,)``.
    shape
        Shape of the assembled object ``(n_rows, n_cols)``.
    points
        Evaluation points of the local coefficients, shape ``(J, E, 2)`` (see :class:`LocalEntries`).
    """

    def __init__(self, rows, cols, local, values, shape, points):
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        keys = rows * shape[1] + cols
        unique, position = np.unique(keys, return_inverse=True)  # row-major order = CSR order
        self.shape = tuple(int(s) for s in shape)
        self.rows, self.cols = unique // shape[1], unique % shape[1]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(self.rows, minlength=shape[0]))]).astype(np.int64)
        self.points = np.asarray(points, dtype=np.float64)
        self.S = sp.csr_matrix(
            (np.asarray(values, dtype=np.float64), (position, np.asarray(local, dtype=np.int64))),
            shape=(len(unique), len(self.points)),
        )

    @property
    def nnz(self) -> int:
        return len(self.rows)

    def local_coefficients(self, field, mus: np.ndarray) -> np.ndarray:
        """The local coefficients ``c(mu)``, shape ``(B, J)``."""
        return _local_values(field, self.points, mus)

    def data(self, field, mus: np.ndarray) -> np.ndarray:
        """Assembled data on the pattern for each parameter, shape ``(B, nnz)``."""
        return np.asarray(self.S @ self.local_coefficients(field, mus).T).T

    def matrix(self, data: np.ndarray) -> sp.csr_matrix:
        """The CSR matrix with the given data ``(nnz,)`` on the pattern."""
        return sp.csr_matrix((np.asarray(data, dtype=np.float64), self.cols.copy(), self.indptr.copy()), shape=self.shape)

    def entries(self, positions: np.ndarray) -> LocalEntries:
        """How to evaluate the data at ``positions`` (indices into the data vector) from few coefficients."""
        sub = self.S[np.asarray(positions, dtype=np.int64)]
        used = np.unique(sub.indices)
        return LocalEntries(np.asarray(sub[:, used].todense()), self.points[used].copy())

    def upper_positions(self) -> np.ndarray:
        """Data positions with ``row <= col`` (the independent entries of a symmetric matrix)."""
        return np.flatnonzero(self.rows <= self.cols)


def _grid_fd_assembly(s: int, rule: str) -> tuple[LocalAssembly, LocalAssembly, np.ndarray]:
    """5-point operator and load on ``s x s`` nodes (interior unknowns), faces as local coefficients."""
    if rule not in FD_RULES:
        raise ValueError(f"fd_rule must be one of {FD_RULES}, got {rule!r}")
    h = 1.0 / (s - 1)
    inv_h2 = 1.0 / h**2
    i, j = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    node = i * s + j
    xy = np.stack([i * h, j * h], axis=-1).reshape(-1, 2)
    interior_index = -np.ones(s * s, dtype=np.int64)
    inner = ((i > 0) & (i < s - 1) & (j > 0) & (j < s - 1)).ravel()
    interior_index[inner] = np.arange(int(inner.sum()))
    # faces with at least one interior node: x-faces (i, j)-(i+1, j) and y-faces (i, j)-(i, j+1)
    px, qx = node[:-1, 1:-1].ravel(), node[1:, 1:-1].ravel()
    py, qy = node[1:-1, :-1].ravel(), node[1:-1, 1:].ravel()
    p, q = np.concatenate([px, py]), np.concatenate([qx, qy])
    face = np.arange(len(p))
    ip, iq = interior_index[p], interior_index[q]
    rows, cols, local, vals = [], [], [], []
    def add(r, c, f, value):
        rows.append(r), cols.append(c), local.append(f), vals.append(np.full(len(r), value))

    for a in (ip, iq):  # each face adds c / h^2 to the diagonal of its interior end(s)
        keep = a >= 0
        add(a[keep], a[keep], face[keep], inv_h2)
    both = (ip >= 0) & (iq >= 0)
    for a, b in ((ip, iq), (iq, ip)):  # and -c / h^2 to the coupling of two interior nodes
        add(a[both], b[both], face[both], -inv_h2)
    points = np.stack([xy[p], xy[q]], axis=1)  # (faces, 2, 2)
    if rule == "midpoint":
        points = points.mean(axis=1, keepdims=True)
    m = int(inner.sum())
    operator = LocalAssembly(
        np.concatenate(rows), np.concatenate(cols), np.concatenate(local), np.concatenate(vals), (m, m), points
    )
    free = np.flatnonzero(inner)
    load = LocalAssembly(np.arange(m), np.zeros(m), np.arange(m), np.ones(m), (m, 1), xy[free][:, None, :])
    return operator, load, free


def _p1_assembly(points: np.ndarray, triangles: np.ndarray, boundary: np.ndarray):
    """P1 stiffness (triangles as local coefficients) and load ``M f`` (node values of ``f``) on the free nodes."""
    n = len(points)
    area, gradients, centroids = fem.element_geometry(points, triangles)
    stiffness = area[:, None, None] * np.einsum("eid,ejd->eij", gradients, gradients)  # (m, 3, 3), unit coefficient
    is_free = np.ones(n, dtype=bool)
    is_free[boundary] = False
    free = np.flatnonzero(is_free)
    free_index = -np.ones(n, dtype=np.int64)
    free_index[free] = np.arange(len(free))
    r = free_index[np.repeat(triangles, 3, axis=1)].ravel()
    c = free_index[np.tile(triangles, (1, 3))].ravel()
    element = np.repeat(np.arange(len(triangles)), 9)
    keep = (r >= 0) & (c >= 0)
    operator = LocalAssembly(
        r[keep], c[keep], element[keep], stiffness.ravel()[keep], (len(free), len(free)), centroids[:, None, :]
    )
    _, mass = fem.assemble_p1(points, triangles)
    mass = sp.coo_matrix(mass.tocsr()[free])
    load = LocalAssembly(mass.row, np.zeros_like(mass.row), mass.col, mass.data, (len(free), 1), points[:, None, :])
    return operator, load, free


@dataclass
class FieldLayout:
    """How an unknown vector becomes a node field: ``u_nodes[free] = u``, zero elsewhere (Dirichlet nodes).

    ``grid_shape`` is set for structured grids (node ``(i, j)`` at flat index ``i * ny + j``), so that
    fields can be reshaped to the dataset's ``(x, y)`` layout.
    """

    n_nodes: int
    free: np.ndarray
    grid_shape: tuple[int, int] | None = None

    def to_nodes(self, u: np.ndarray) -> np.ndarray:
        """``(..., n_free) -> (..., n_nodes)``, or ``(..., *grid_shape)`` on a grid."""
        u = np.asarray(u)
        out = np.zeros(u.shape[:-1] + (self.n_nodes,), dtype=u.dtype)
        out[..., self.free] = u
        return out.reshape(u.shape[:-1] + self.grid_shape) if self.grid_shape else out


# -- the problem ------------------------------------------------------------------------------------
class DiffusionProblem:
    """``-div(a(x; mu) grad u) = f(x; mu)`` on a 2D domain with ``u = 0`` on the boundary.

    Subclasses define :meth:`coefficient`, :meth:`forcing`, :meth:`coefficient_lower_bound` and
    :attr:`parameter_space`. Nothing is assembled until it is needed, so constructing a problem is
    cheap (a saved reduced model re-creates its problem to evaluate ``a`` and ``f`` at magic points).

    Parameters
    ----------
    resolution
        Nodes per direction of the structured grid, boundary included (``h = 1 / (resolution - 1)``).
    discretization
        ``"fd"`` (5-point finite differences on the grid) or ``"p1"`` (P1 elements: on the structured
        triangle mesh of the grid's nodes, or on ``mesh_path`` if given).
    fd_rule
        Face coefficient of finite differences: ``"harmonic"`` mean of the two nodes (as
        :func:`~surrogates.solvers.finite_differences.diffusion_operator`) or value at the ``"midpoint"``.
    mesh_path
        A triangle mesh file read with meshio (P1 only); all its boundary nodes are Dirichlet nodes.
    rtol, preconditioner
        Full solves: the project's PCG (:func:`~surrogates.solvers.sparse_cg.solve_spd`).
    """

    parameter_space: ParameterSpace
    default_fd_rule = "harmonic"

    def __init__(
        self,
        resolution: int = 64,
        discretization: str = "fd",
        fd_rule: str | None = None,
        mesh_path: str | None = None,
        rtol: float = 1e-12,
        preconditioner: str = "amg",
    ):
        if resolution < 3:
            raise ValueError(f"resolution must be >= 3, got {resolution}")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        fd_rule = fd_rule or self.default_fd_rule
        if fd_rule not in FD_RULES:
            raise ValueError(f"fd_rule must be one of {FD_RULES}, got {fd_rule!r}")
        if mesh_path is not None and discretization != "p1":
            raise ValueError("mesh_path needs discretization='p1'")
        if preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
        self.resolution = int(resolution)
        self.discretization = discretization
        self.fd_rule = fd_rule
        self.mesh_path = None if mesh_path is None else str(mesh_path)
        self.rtol = float(rtol)
        self.preconditioner = preconditioner

    # -- to implement -------------------------------------------------------------------------------
    def coefficient(self, points: np.ndarray, mus: np.ndarray) -> np.ndarray:
        """``a(x; mu)`` at points ``(n, 2)`` for parameters ``(B, P)``; returns ``(B, n)``, positive."""
        raise NotImplementedError

    def forcing(self, points: np.ndarray, mus: np.ndarray) -> np.ndarray:
        """``f(x; mu)`` at points ``(n, 2)`` for parameters ``(B, P)``; returns ``(B, n)``. Default: 1."""
        return np.ones((len(mus), len(points)))

    def coefficient_lower_bound(self, mus: np.ndarray) -> np.ndarray:
        """A lower bound of ``inf_x a(x; mu)`` over the domain, ``(B, P) -> (B,)``, positive."""
        raise NotImplementedError

    # -- description --------------------------------------------------------------------------------
    def config(self) -> dict:
        """Constructor arguments (JSON-serializable), so that the problem can be re-created."""
        return {
            "resolution": self.resolution,
            "discretization": self.discretization,
            "fd_rule": self.fd_rule,
            "mesh_path": self.mesh_path,
            "rtol": self.rtol,
            "preconditioner": self.preconditioner,
        }

    # -- assembly (lazy) ----------------------------------------------------------------------------
    @cached_property
    def _assembly(self) -> tuple[LocalAssembly, LocalAssembly, FieldLayout]:
        if self.discretization == "fd":
            s = self.resolution
            operator, load, free = _grid_fd_assembly(s, self.fd_rule)
            return operator, load, FieldLayout(s * s, free, (s, s))
        if self.mesh_path is None:
            nx = self.resolution - 1
            points, triangles = fem.structured_triangle_mesh(nx)
            boundary, grid = fem.boundary_nodes(triangles), (nx + 1, nx + 1)
        else:
            if not Path(self.mesh_path).is_file():
                raise FileNotFoundError(f"mesh file {self.mesh_path} does not exist")
            points, triangles, boundary = fem.read_mesh(self.mesh_path)
            grid = None
        operator, load, free = _p1_assembly(points, triangles, boundary)
        self._mesh_points = points
        return operator, load, FieldLayout(len(points), free, grid)

    def grid_layout(self) -> tuple[int, int, tuple[int, int]] | None:
        """``(n_nodes, n_unknowns, grid_shape)`` of the structured grid, without assembling anything.

        ``None`` for a mesh read from ``mesh_path`` (only reading it would tell). On the structured grid
        (finite differences or P1) every boundary node is a Dirichlet node.
        """
        if self.mesh_path is not None:
            return None
        s = self.resolution
        return s * s, (s - 2) ** 2, (s, s)

    @property
    def operator_assembly(self) -> LocalAssembly:
        return self._assembly[0]

    @property
    def rhs_assembly(self) -> LocalAssembly:
        return self._assembly[1]

    @property
    def layout(self) -> FieldLayout:
        return self._assembly[2]

    @property
    def dim(self) -> int:
        """Number of unknowns ``N_h``."""
        return self.operator_assembly.shape[0]

    @cached_property
    def product(self) -> sp.csr_matrix:
        """``X``: the operator with ``a = 1`` (discrete ``H^1_0`` semi-inner product), SPD, ``(N_h, N_h)``."""
        ones = np.ones((1, self.operator_assembly.S.shape[1]))
        return self.operator_assembly.matrix(np.asarray(self.operator_assembly.S @ ones.T).ravel())

    def operator_data(self, mus: np.ndarray) -> np.ndarray:
        """``A(mu)`` as data on :attr:`operator_assembly`'s pattern, ``(B, P) -> (B, nnz)``."""
        return self.operator_assembly.data(self.coefficient, np.atleast_2d(mus))

    def operator(self, mu: np.ndarray) -> sp.csr_matrix:
        """``A(mu)``, CSR ``(N_h, N_h)``, for one parameter ``(P,)``."""
        return self.operator_assembly.matrix(self.operator_data(np.asarray(mu)[None])[0])

    def rhs_data(self, mus: np.ndarray) -> np.ndarray:
        """``b(mu)``, ``(B, P) -> (B, N_h)``."""
        return self.rhs_assembly.data(self.forcing, np.atleast_2d(mus))

    def rhs(self, mu: np.ndarray) -> np.ndarray:
        return self.rhs_data(np.asarray(mu)[None])[0]

    def local_coefficients(self, mus: np.ndarray) -> np.ndarray:
        """Local coefficients ``c(mu)`` of the operator (faces or triangles), ``(B, J)``."""
        return self.operator_assembly.local_coefficients(self.coefficient, np.atleast_2d(mus))

    def operator_error_bound(self, mus: np.ndarray, weights: np.ndarray, selected: np.ndarray) -> np.ndarray:
        """Upper bound of ``||A(mu) - sum_m w_m A(mu_m)||`` from ``X`` to its dual, per parameter.

        Both operators are sums of the same positive semidefinite local terms ``c_k T_k`` with
        ``X = sum_k T_k`` (``c_k(1) = 1``), so ``|v^T (A - A_M) v| <= max_k |c_k(mu) - sum_m w_m c_k(mu_m)| v^T X v``.

        Parameters
        ----------
        mus
            Shape ``(B, P)``.
        weights
            ``w(mu)``, shape ``(B, M)``.
        selected
            ``mu_m``, shape ``(M, P)``.
        """
        exact = self.local_coefficients(mus)
        approx = np.asarray(weights) @ self.local_coefficients(selected)
        return np.max(np.abs(exact - approx), axis=1)  # c_k(1) = 1 for every local rule

    # -- full solves --------------------------------------------------------------------------------
    def solve_system(self, A: sp.spmatrix, b: np.ndarray) -> tuple[np.ndarray, int, float]:
        """Solve a full system with the project's PCG; returns ``(u (N_h,), iterations, relative residual)``."""
        return solve_spd(A, b, rtol=self.rtol, preconditioner=self.preconditioner)

    def solve_full(self, mu: np.ndarray) -> np.ndarray:
        """The full solution ``u(mu)`` on the free nodes, ``(N_h,)``, with the exact operator."""
        mu = self.parameter_space.check(mu)[0]
        return self.solve_system(self.operator(mu), self.rhs(mu))[0]
