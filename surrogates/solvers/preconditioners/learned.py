"""Learned PCG preconditioner (Li et al., ICML 2023): a graph network predicts a sparse factor ``L``.

The network reads the matrix graph of an SPD matrix ``A`` (nodes = unknowns, edges = nonzeros) and
outputs one value per nonzero of ``tril(A)``. The factor is predicted for the diagonally scaled matrix
``Â = D^{-1/2} A D^{-1/2}`` (``D = diag(A)``), which makes the network blind to the overall scale of
``A`` (``1/h^2``, coefficient units) and lets it see only the pattern of relative couplings:

    L̂_ii = softplus(o_i + log(e - 1)) + 1e-6 > 0,    L̂_ij = Â_ij + o_ij  (j < i, A_ij != 0),
    L = D^{1/2} L̂,    P = L L^T.

``L`` is lower triangular with a strictly positive diagonal, hence nonsingular, and ``P = L L^T`` is
symmetric positive definite *by construction*, whatever the weights. With zero outputs ``o`` the
factor is ``I + tril(Â, -1)``, i.e. symmetric Gauss-Seidel; the output layers start at zero so an
untrained network is this classical preconditioner and training improves on it.

Training needs no CG unrolling: the loss of the paper is ``|| L L^T x - b ||^2`` over pairs
``b = A x`` where ``x = A^{-1} b`` for right-hand sides ``b`` drawn from a distribution; because
``x`` is a solution, errors of ``P`` on the smooth (small-eigenvalue) modes of ``A`` are amplified
by ``1 / lambda`` and dominate the loss, and those are the modes that drive CG's iteration count.
``loss="frobenius"`` (random ``x``, as in stochastic Frobenius-norm training ``||(P - A) w||``)
weighs all modes equally and is kept for comparison.

Applying ``P^{-1} r = L^{-T} L^{-1} r`` costs two sparse triangular solves
(:class:`surrogates.solvers.preconditioners.factored.FactoredPreconditioner`), batched over ``(B, n)``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing
from tqdm.auto import tqdm

from surrogates.solvers.preconditioners.factored import FactoredPreconditioner
from surrogates.solvers.preconditioners.persistence import load_network, load_network_metadata, save_network

__all__ = [
    "LearnedPreconditioner",
    "PreconditionerGNN",
    "apply_lower",
    "factor_values",
    "load",
    "load_metadata",
    "matrix_graph",
    "save",
    "train_preconditioner",
]

NODE_FEATURES = 4
EDGE_FEATURES = 3
_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1: zero output -> unit diagonal
_DIAGONAL_FLOOR = 1e-6  # keeps L's diagonal away from 0 in floating point, not only in exact arithmetic


# -- matrix graph ---------------------------------------------------------------------------------

def _check_spd_pattern(A: sp.spmatrix) -> sp.csr_matrix:
    A = sp.csr_matrix(A, dtype=np.float64)
    A.sum_duplicates()
    A.sort_indices()
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got {A.shape}")
    if np.any(A.diagonal() <= 0):
        raise ValueError("A must have a positive diagonal (SPD)")
    return A


def matrix_graph(A: sp.spmatrix) -> Data:
    """The graph of a sparse SPD matrix, with scale-free features, for :class:`PreconditionerGNN`.

    Parameters
    ----------
    A
        Sparse SPD matrix, shape ``(n, n)``; its nonzero pattern should be structurally symmetric.

    Returns
    -------
    torch_geometric.data.Data
        ``x`` ``(n, 4)`` float32 node features: ``log(d_i / mean d)``, the row sum of ``Â`` (zero for
        a pure Neumann-like interior row, positive next to a Dirichlet boundary), the number of
        neighbours over the largest number, and a constant 1.
        ``edge_index`` ``(2, E)``: one edge ``j -> i`` (source, target) per off-diagonal nonzero
        ``A_ij``, both directions present.
        ``edge_attr`` ``(E, 3)`` float32: ``Â_ij``, ``[j < i]``, ``[j > i]`` (the ordering matters: ``L``
        is triangular in it).
        ``lower`` ``(E,)`` bool: the edges that are strict-lower entries of ``A`` (``j < i``).
        ``a_hat`` ``(E,)`` float64: ``Â_ij``; ``d_sqrt`` ``(n,)`` float64: ``sqrt(diag A)``.
    """
    A = _check_spd_pattern(A)
    n = A.shape[0]
    d = A.diagonal()
    d_sqrt = np.sqrt(d)
    coo = A.tocoo()
    off = coo.row != coo.col
    rows, cols = coo.row[off].astype(np.int64), coo.col[off].astype(np.int64)
    a_hat = coo.data[off] / (d_sqrt[rows] * d_sqrt[cols])

    degree = np.bincount(rows, minlength=n).astype(np.float64)
    row_sum = 1.0 + np.bincount(rows, weights=a_hat, minlength=n)
    x = np.stack([np.log(d / d.mean()), row_sum, degree / max(degree.max(), 1.0), np.ones(n)], axis=1)
    lower = cols < rows
    edge_attr = np.stack([a_hat, lower, ~lower], axis=1)
    return Data(
        x=torch.from_numpy(x).float(),
        edge_index=torch.from_numpy(np.stack([cols, rows])),  # messages flow from column j to row i
        edge_attr=torch.from_numpy(edge_attr).float(),
        lower=torch.from_numpy(lower),
        a_hat=torch.from_numpy(a_hat),
        d_sqrt=torch.from_numpy(d_sqrt),
        num_nodes=n,
    )


# -- network ----------------------------------------------------------------------------------------

def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class _EdgeNodeBlock(MessagePassing):
    """One round: each edge state is updated from its two end nodes, then nodes sum their incoming edges.

    Residual updates with layer norm keep many rounds stable with untuned initialization.
    """

    def __init__(self, hidden: int):
        super().__init__(aggr="sum")
        self.edge_mlp = _mlp(3 * hidden, hidden, hidden)
        self.node_mlp = _mlp(2 * hidden, hidden, hidden)
        self.edge_norm = nn.LayerNorm(hidden)
        self.node_norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index
        e = self.edge_norm(e + self.edge_mlp(torch.cat([e, h[src], h[dst]], dim=-1)))
        incoming = self.propagate(edge_index, e=e, size=(h.shape[0], h.shape[0]))
        h = self.node_norm(h + self.node_mlp(torch.cat([h, incoming], dim=-1)))
        return h, e

    def message(self, e: torch.Tensor) -> torch.Tensor:  # noqa: D102 - the edge state is the message
        return e


class PreconditionerGNN(nn.Module):
    """Graph network ``A -> L`` (one value per nonzero of ``tril(A)``), ``P = L L^T`` SPD by construction.

    Parameters
    ----------
    hidden
        Width of node and edge states.
    rounds
        Message-passing rounds (receptive field in graph hops).

    Attributes
    ----------
    init_kwargs : dict
        The constructor arguments (plain values), saved with the weights by :func:`save`.
    """

    def __init__(self, hidden: int = 32, rounds: int = 6):
        super().__init__()
        self.init_kwargs = {"hidden": int(hidden), "rounds": int(rounds)}
        self.node_encoder = _mlp(NODE_FEATURES, hidden, hidden)
        self.edge_encoder = _mlp(EDGE_FEATURES, hidden, hidden)
        self.blocks = nn.ModuleList(_EdgeNodeBlock(hidden) for _ in range(rounds))
        self.diagonal_head = _mlp(hidden, hidden, 1)
        self.lower_head = _mlp(3 * hidden, hidden, 1)
        # zero output layers: the untrained network is symmetric Gauss-Seidel (see module docstring)
        for head in (self.diagonal_head, self.lower_head):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(self, graph: Data) -> tuple[torch.Tensor, torch.Tensor]:
        """Factor values of the scaled matrix ``Â``.

        Parameters
        ----------
        graph
            From :func:`matrix_graph` (or a :class:`torch_geometric.data.Batch` of them).

        Returns
        -------
        diagonal : torch.Tensor
            ``L̂_ii > 0``, shape ``(n,)``.
        lower : torch.Tensor
            ``L̂_ij`` for the edges with ``graph.lower`` (``j < i``), in edge order, shape ``(E_lower,)``.
        """
        h = self.node_encoder(graph.x)
        e = self.edge_encoder(graph.edge_attr)
        for block in self.blocks:
            h, e = block(h, e, graph.edge_index)
        diagonal = nn.functional.softplus(self.diagonal_head(h).squeeze(-1) + _SOFTPLUS_ONE) + _DIAGONAL_FLOOR
        mask = graph.lower
        src, dst = graph.edge_index[:, mask]
        correction = self.lower_head(torch.cat([e[mask], h[src], h[dst]], dim=-1)).squeeze(-1)
        lower = graph.a_hat[mask].to(correction.dtype) + correction
        return diagonal, lower

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write the network to ``path`` (parents created) through :mod:`surrogates.checkpoint`; see :func:`load`."""
        return save(self, path, metadata)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "PreconditionerGNN":
        """Rebuild a network written by :meth:`save`."""
        return load(path, map_location)


def save(model: PreconditionerGNN, path: str | Path, metadata: dict | None = None) -> Path:
    """Save a :class:`PreconditionerGNN` through :mod:`surrogates.checkpoint` (kind ``"preconditioner"``).

    ``metadata`` (plain values only, e.g. how the network was trained) is stored as the file's
    training record, ``{}`` by default; read it back with :func:`load_metadata`.
    """
    return save_network(model, path, metadata)


def load_metadata(path: str | Path) -> dict:
    """The ``metadata`` dict stored by :func:`save` (``{}`` if none); ``CheckpointError`` for an invalid file."""
    return load_network_metadata(path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> PreconditionerGNN:
    """Load a :class:`PreconditionerGNN` written by :func:`save` (in eval mode).

    Raises
    ------
    CheckpointError
        When the file is unreadable, not a learned-preconditioner file, or its weights do not fit.
    """
    return load_network(path, map_location, expected=PreconditionerGNN)


# -- factor -------------------------------------------------------------------------------------------

def factor_values(model: PreconditionerGNN, A: sp.spmatrix) -> sp.csr_matrix:
    """The predicted factor ``L = D^{1/2} L̂`` of ``P = L L^T ≈ A``.

    Parameters
    ----------
    model
        A (trained or untrained) :class:`PreconditionerGNN`.
    A
        Sparse SPD matrix, shape ``(n, n)``.

    Returns
    -------
    scipy.sparse.csr_matrix
        Lower triangular, float64, shape ``(n, n)``, with exactly the pattern of ``tril(A)`` and a
        positive diagonal.
    """
    graph = matrix_graph(A)
    param = next(model.parameters())
    with torch.no_grad():
        diagonal, lower = model(graph.to(param.device))
    diagonal = diagonal.double().cpu().numpy()
    lower = lower.double().cpu().numpy()
    n = graph.num_nodes
    d_sqrt = graph.d_sqrt.numpy()
    i, j = graph.edge_index[1, graph.lower].numpy(), graph.edge_index[0, graph.lower].numpy()
    rows = np.concatenate([np.arange(n), i])
    cols = np.concatenate([np.arange(n), j])
    vals = np.concatenate([diagonal, lower]) * d_sqrt[rows]  # row scaling: L = D^{1/2} L̂
    L = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    L.sort_indices()
    return L


def apply_lower(diagonal: torch.Tensor, lower: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                v: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """Differentiable sparse product ``L v`` (or ``L^T v``) from the factor's values.

    Parameters
    ----------
    diagonal
        ``L_ii``, shape ``(n,)``.
    lower
        Strict-lower values ``L_{rows[k], cols[k]}``, shape ``(E,)``.
    rows, cols
        Their positions, shape ``(E,)`` each.
    v
        Vectors, shape ``(n, K)``.
    transpose
        Compute ``L^T v`` instead of ``L v``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, K)``.
    """
    target, source = (cols, rows) if transpose else (rows, cols)
    out = diagonal[:, None] * v
    return out.index_add(0, target, lower[:, None] * v[source])


# -- preconditioner -----------------------------------------------------------------------------------

class LearnedPreconditioner(FactoredPreconditioner):
    """``M = L L^T`` with ``L`` predicted once by a :class:`PreconditionerGNN`; ``apply`` = two triangular solves.

    Parameters
    ----------
    model
        The network (trained, or loaded with :func:`load`).
    A
        The system matrix (scipy sparse SPD), shape ``(n, n)``.
    device, dtype
        Where the triangular solves run; default CPU float64.

    Attributes
    ----------
    L : scipy.sparse.csr_matrix
        The factor, float64, pattern of ``tril(A)``.
    """

    name = "learned"

    def __init__(self, model: PreconditionerGNN, A: sp.spmatrix, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64):
        self.L = factor_values(model, A)
        super().__init__(self.L)
        self.to(device, dtype)


# -- training -----------------------------------------------------------------------------------------

LOSSES = ("solution", "frobenius")


class _System:
    """One training matrix: its graph, and a factorization of ``Â`` to draw solutions ``x̂ = Â^{-1} b̂``."""

    def __init__(self, A: sp.spmatrix, loss: str):
        A = _check_spd_pattern(A)
        self.graph = matrix_graph(A)
        d_inv_sqrt = sp.diags(1.0 / np.sqrt(A.diagonal()))
        self.a_hat = (d_inv_sqrt @ A @ d_inv_sqrt).tocsc()
        self.lu = spla.splu(self.a_hat) if loss == "solution" else None

    def sample(self, k: int, loss: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(x̂, b̂ = Â x̂)``, shapes ``(n, k)``, float64."""
        n = self.a_hat.shape[0]
        if loss == "solution":
            b = rng.standard_normal((n, k))
            return self.lu.solve(b), b
        x = rng.standard_normal((n, k))
        return x, self.a_hat @ x


def _batch_loss(model: PreconditionerGNN, systems: Sequence[_System], k: int, loss: str,
                rng: np.random.Generator, scale_invariant: bool = False) -> torch.Tensor:
    """Mean over systems and samples of ``||c L̂ L̂^T x̂ - b̂||^2 / ||b̂||^2`` (relative: matrices weigh equally).

    ``c = 1``, or with ``scale_invariant`` the per-matrix least-squares optimum: CG is invariant to
    rescaling ``P``, so the network need not spend capacity on the overall scale.
    """
    batch = Batch.from_data_list([s.graph for s in systems])
    pairs = [s.sample(k, loss, rng) for s in systems]
    x = torch.from_numpy(np.concatenate([p[0] for p in pairs])).float()
    b = torch.from_numpy(np.concatenate([p[1] for p in pairs])).float()
    diagonal, lower = model(batch)
    cols, rows = batch.edge_index[:, batch.lower]
    y = apply_lower(diagonal, lower, rows, cols, x, transpose=True)
    px = apply_lower(diagonal, lower, rows, cols, y)
    graph_of = batch.batch
    if scale_invariant:
        inner = torch.zeros(len(systems)).index_add(0, graph_of, (px * b).sum(1))
        norm = torch.zeros(len(systems)).index_add(0, graph_of, (px * px).sum(1))
        px = px * (inner / norm)[graph_of, None]
    residual = torch.zeros(len(systems), k).index_add(0, graph_of, (px - b) ** 2)
    scale = torch.zeros(len(systems), k).index_add(0, graph_of, b ** 2)
    return (residual / scale).mean()


def train_preconditioner(
    matrices: Sequence[sp.spmatrix],
    epochs: int = 100,
    lr: float = 3e-3,
    batch_size: int = 4,
    samples: int = 8,
    loss: str = "solution",
    scale_invariant: bool = False,
    hidden: int = 32,
    rounds: int = 6,
    seed: int = 0,
    model: PreconditionerGNN | None = None,
    progress: bool = True,
    history: list | None = None,
) -> PreconditionerGNN:
    """Train a :class:`PreconditionerGNN` on a family of SPD matrices, without unrolling CG.

    Each step draws, for each matrix of a mini-batch, ``samples`` pairs ``(x̂, b̂ = Â x̂)`` in the
    diagonally scaled system and minimizes ``||L̂ L̂^T x̂ - b̂||^2 / ||b̂||^2``. With ``loss="solution"``
    (Li et al.) ``b̂ ~ N(0, I)`` and ``x̂ = Â^{-1} b̂``; with ``loss="frobenius"`` ``x̂ ~ N(0, I)``.

    Parameters
    ----------
    matrices
        Training matrices (scipy sparse SPD), any sizes.
    epochs
        Passes over the matrices; fresh samples are drawn every step.
    lr
        Adam learning rate (cosine-annealed to 1 % over the run).
    batch_size
        Matrices per step.
    samples
        Vector pairs per matrix per step.
    loss
        ``"solution"`` or ``"frobenius"``.
    scale_invariant
        Fit ``P`` up to a per-matrix scalar (CG does not see the scale of ``P``).
    hidden, rounds
        Network size, used when ``model`` is None.
    seed
        Seeds weights, shuffling and samples.
    model
        Continue training this network instead of a new one.
    progress
        Show a tqdm bar over epochs.
    history
        If given, the mean training loss of each epoch is appended to it.

    Returns
    -------
    PreconditionerGNN
        The trained network, in eval mode, float32, on the CPU.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if not len(matrices):
        raise ValueError("need at least one training matrix")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PreconditionerGNN(hidden=hidden, rounds=rounds) if model is None else model
    model.train()
    systems = [_System(A, loss) for A in matrices]
    steps_per_epoch = math.ceil(len(systems) / batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch, eta_min=lr / 100)
    bar = tqdm(range(epochs), desc="training preconditioner", unit="epoch", disable=not progress)
    start = time.perf_counter()
    for _ in bar:
        order = rng.permutation(len(systems))
        total = 0.0
        for step in range(steps_per_epoch):
            chunk = [systems[i] for i in order[step * batch_size:(step + 1) * batch_size]]
            value = _batch_loss(model, chunk, samples, loss, rng, scale_invariant)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            scheduler.step()
            total += value.item() * len(chunk)
        epoch_loss = total / len(systems)
        if history is not None:
            history.append(epoch_loss)
        bar.set_postfix(loss=f"{epoch_loss:.4g}", seconds=f"{time.perf_counter() - start:.0f}")
    return model.eval()
