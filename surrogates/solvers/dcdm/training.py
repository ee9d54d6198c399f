"""Training the DCDM network without solutions: the scale-invariant loss ``||b - alpha A f(b)||``.

For a right-hand side ``b`` and the network's direction ``d = f(b)`` the loss is the residual left by
one DCDM step from ``x = 0``:

    alpha = d^T b / d^T A d,    loss(b) = ||b - alpha A d||^2 / ||b||^2,

which is the paper's loss (their ``A_tilde_inv`` and ``qTb``). It is zero exactly when ``A d`` is
parallel to ``b`` (``d`` is ``A^{-1} b`` up to a constant), and it is invariant to the length and sign
of ``d`` (``alpha`` absorbs them): the network is not asked for a scale the iteration does not use.
Everything works in the diagonally scaled system ``Â = D^{-1/2} A D^{-1/2}``, where the network lives.

The loss and DCDM's iteration count need not agree (a lower loss can come with more iterations, see
``docs/solvers.md``), so :func:`train_dcdm` can select the network by the count itself: given held-out
validation matrices it measures :func:`validation_iterations` before training and after every epoch and
returns the best weights seen, so training can only improve on its start by that measure.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from surrogates.solvers.dcdm.grid import grid_couplings
from surrogates.solvers.dcdm.iteration import dcdm
from surrogates.solvers.dcdm.network import DCDMNet
from surrogates.solvers.dcdm.training_vectors import ritz_pairs, training_vectors
from surrogates.solvers.sparse import SparseMatrix

__all__ = ["scale_invariant_loss", "train_dcdm", "validation_iterations"]


def scale_invariant_loss(A: SparseMatrix, b: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Mean of ``||b - alpha A d||^2 / ||b||^2`` with ``alpha = d^T b / d^T A d``, per row.

    Parameters
    ----------
    A
        SPD matrix ``(n, n)`` (one, shared by the rows), on the device and dtype of ``b``.
    b
        Right-hand sides, shape ``(B, n)``, nonzero rows.
    d
        Directions, shape ``(B, n)``; gradients flow through them.

    Returns
    -------
    torch.Tensor
        Scalar in ``[0, 1]`` (one A-optimal step never increases the A-norm error; the 2-norm residual can
        grow, so values above 1 are possible but rare).
    """
    if b.shape != d.shape or b.ndim != 2:
        raise ValueError(f"b and d must both have shape (B, n), got {tuple(b.shape)} and {tuple(d.shape)}")
    Ad = A.matvec(d)
    alpha = (d * b).sum(1, keepdim=True) / (d * Ad).sum(1, keepdim=True)
    residual = b - alpha * Ad
    return (residual.pow(2).sum(1) / b.pow(2).sum(1)).mean()


def validation_iterations(model: DCDMNet, matrices: Sequence[sp.spmatrix], rtol: float = 1e-6, maxiter: int = 1000,
                          seed: int = 0) -> float:
    """Mean DCDM iterations to ``rtol`` over ``matrices``, one right-hand side ``b ~ N(0, I)`` each.

    Parameters
    ----------
    model
        The network (evaluated without gradients; its train/eval mode is restored).
    matrices
        Held-out 5-point SPD matrices (scipy sparse), ``(n, n)`` each, sizes may differ.
    rtol
        Relative tolerance of :func:`~surrogates.solvers.dcdm.iteration.dcdm`.
    maxiter
        Iteration cap; a solve that does not converge counts as ``maxiter``.
    seed
        Seeds the right-hand sides (the same ones at every call, so epochs are compared on equal terms).

    Returns
    -------
    float
        The mean count (keep = 2, the paper's iteration), float64 solves.
    """
    was_training = model.training
    model.eval()
    counts = []
    for k, A in enumerate(matrices):
        b = torch.from_numpy(np.random.default_rng([seed, k]).standard_normal(A.shape[0]))
        result = dcdm(A, b, model, rtol=rtol, maxiter=maxiter)
        counts.append(int(result.iterations.max()) if bool(result.converged.all()) else maxiter)
    model.train(was_training)
    return float(np.mean(counts))


class _System:
    """One training matrix in scaled form: ``Â`` (differentiable products), the network's channels, Ritz pairs.

    ``Â = D^{-1/2} A D^{-1/2}`` with the network's ``D`` (:func:`~surrogates.solvers.dcdm.grid.grid_couplings`).
    """

    def __init__(self, A: sp.spmatrix, ritz_steps: int, rng: np.random.Generator, scaling: str = "diagonal"):
        A = sp.csr_matrix(A, dtype=np.float64)
        self.couplings, inverse_sqrt = grid_couplings(SparseMatrix.from_scipy(A), scaling)
        d_inv_sqrt = sp.diags(inverse_sqrt.numpy())
        a_hat = (d_inv_sqrt @ A @ d_inv_sqrt).tocsr()
        self.a_hat = SparseMatrix.from_scipy(a_hat, dtype=torch.float32)
        self.couplings = self.couplings.float()
        self.m = self.couplings.shape[-1]
        # the spectrum of Â, whose smooth modes the network must learn to invert
        self.values, self.vectors = ritz_pairs(a_hat, min(ritz_steps, A.shape[0]), rng)

    def loss(self, model: DCDMNet, count: int, rng: np.random.Generator, theta: int | None,
             weighting: str = "paper") -> torch.Tensor:
        b = torch.from_numpy(training_vectors(self.values, self.vectors, count, rng, theta, weighting=weighting)).float()
        d = model(b.view(count, 1, self.m, self.m), self.couplings).reshape(count, -1)
        return scale_invariant_loss(self.a_hat, b, d)


def train_dcdm(
    matrices: Sequence[sp.spmatrix],
    epochs: int = 50,
    steps_per_epoch: int = 20,
    batch_size: int = 16,
    lr: float = 1e-3,
    ritz_steps: int = 300,
    theta: int | None = None,
    weighting: str = "paper",
    width: int = 16,
    blocks: int = 2,
    coarsest: int = 4,
    coarse_couplings: str = "average",
    coarse_gain: float = 1.0,
    structure: str = "v_cycle",
    seed: int = 0,
    model: DCDMNet | None = None,
    progress: bool = True,
    history: list | None = None,
    init: str = "random",
    scaling: str = "diagonal",
    validation: Sequence[sp.spmatrix] = (),
    validation_history: list | None = None,
) -> DCDMNet:
    """Train a :class:`DCDMNet` on 5-point SPD matrices with the scale-invariant loss.

    Each step picks one matrix (in turn), draws ``batch_size`` fresh training vectors from its Ritz pairs
    (:func:`~surrogates.solvers.dcdm.training_vectors.training_vectors`) and takes one Adam step on
    :func:`scale_invariant_loss` in the scaled system.

    Parameters
    ----------
    matrices
        Training matrices (scipy sparse, 5-point on square grids, sizes may differ).
    epochs, steps_per_epoch
        Optimization length; the learning rate is cosine-annealed to 1 % over all steps.
    batch_size
        Training vectors per step.
    lr
        Adam learning rate.
    ritz_steps
        Lanczos steps per matrix (Ritz vectors available to the training vectors).
    theta
        Extra low Ritz vectors with the large weight (default ``k // 20``).
    weighting
        Training vectors' coefficients (:func:`~surrogates.solvers.dcdm.training_vectors.training_vectors`).
    width, blocks, coarsest, coarse_couplings, coarse_gain, structure
        The network's, used when ``model`` is None (see :class:`~surrogates.solvers.dcdm.network.DCDMNet`).
    seed
        Seeds weights, Lanczos starts and training vectors.
    model
        Continue training this network.
    progress
        Show a tqdm bar over epochs.
    history
        If given, the mean loss of each epoch is appended.
    init, scaling
        The network's starting weights (``"random"`` or ``"identity"``) and system (``"diagonal"`` or
        ``"mean"``) when ``model`` is None (see :class:`~surrogates.solvers.dcdm.network.DCDMNet`).
    validation
        Held-out matrices (never the test ones). If given, :func:`validation_iterations` is measured on
        them before the first step and after every epoch, and the weights with the lowest count are
        returned (the earliest of equal ones, so the start wins ties).
    validation_history
        If given, the validation counts are appended: the start's first, then one per epoch.

    Returns
    -------
    DCDMNet
        The trained network (the selected one with ``validation``), float32, CPU, eval mode.
    """
    if not len(matrices):
        raise ValueError("need at least one training matrix")
    if min(epochs, steps_per_epoch, batch_size) < 1:
        raise ValueError(f"epochs, steps_per_epoch and batch_size must be positive, got {epochs}, {steps_per_epoch}, {batch_size}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if model is None:
        model = DCDMNet(width=width, blocks=blocks, coarsest=coarsest, coarse_couplings=coarse_couplings,
                        coarse_gain=coarse_gain, structure=structure, init=init, scaling=scaling)
    model.train()
    best = (validation_iterations(model, validation), copy.deepcopy(model.state_dict())) if len(validation) else None
    if validation_history is not None and best is not None:
        validation_history.append(best[0])
    systems = [_System(A, ritz_steps, rng, model.scaling) for A in matrices]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    total_steps = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=lr / 100)
    bar = tqdm(range(epochs), desc="training DCDM network", unit="epoch", disable=not progress)
    start, step = time.perf_counter(), 0
    for _ in bar:
        total = 0.0
        for _ in range(steps_per_epoch):
            value = systems[step % len(systems)].loss(model, batch_size, rng, theta, weighting)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            scheduler.step()
            total += value.item()
            step += 1
        epoch_loss = total / steps_per_epoch
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"DCDM training diverged (loss {epoch_loss}); lower lr")
        if history is not None:
            history.append(epoch_loss)
        postfix = {"loss": f"{epoch_loss:.4g}"}
        if best is not None:
            count = validation_iterations(model, validation)
            if validation_history is not None:
                validation_history.append(count)
            if count < best[0]:
                best = (count, copy.deepcopy(model.state_dict()))
            postfix.update(val_it=f"{count:.1f}", best=f"{best[0]:.1f}")
        bar.set_postfix(**postfix, seconds=f"{time.perf_counter() - start:.0f}")
    if best is not None:
        model.load_state_dict(best[1])
    return model.eval()
