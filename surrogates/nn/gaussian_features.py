"""Gaussian feature embedding: a parametric mesh of ``N`` adaptive Gaussians in ``d`` dimensions.

For a point ``x`` in ``R^d`` the layer returns

    phi(x) = sum_i G_i(x) f_i,        G_i(x) = exp(-1/2 (x - mu_i)^T Sigma_i^{-1} (x - mu_i)),

with trainable centers ``mu_i`` (``(N, d)``), feature vectors ``f_i`` (``(N, k)``) and covariances
``Sigma_i``. With ``normalize=True`` the sum is divided by ``sum_i G_i(x) + eps`` (a partition of
unity; off by default, as in Kang et al.).

Covariance parameterization
---------------------------
Each Gaussian stores the Cholesky factor of its *precision*, ``Sigma_i^{-1} = M_i M_i^T`` with
``M_i`` lower triangular, diagonal ``exp(s_i)`` (strictly positive) and free off-diagonal entries.
``Sigma_i`` is then symmetric positive definite for every value of the parameters, so plain gradient
steps can never leave the admissible set, and the quadratic form needs no matrix inverse:
``(x - mu)^T Sigma^{-1} (x - mu) = |M^T (x - mu)|^2``. ``covariance="diagonal"`` keeps ``M``
diagonal (axis-aligned ellipsoids; the initialization of the full model), ``"full"`` trains the
off-diagonal entries as well (rotated ellipsoids).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from surrogates.arguments import check_number

__all__ = ["GaussianFeatures", "box_bounds"]

COVARIANCES = ("diagonal", "full")



def box_bounds(dim: int, bounds: Sequence[Sequence[float]] | None) -> list[list[float]]:
    """``bounds`` as ``dim`` pairs ``[low, high]`` of floats with ``low < high`` (``[-1, 1]^dim`` for None).

    Checked on Python floats, not tensors: models are also built on the ``meta`` device, where
    tensors hold no values (checkpoint loading compares shapes before allocating).
    """
    pairs = [[-1.0, 1.0]] * dim if bounds is None else [[float(v) for v in pair] for pair in bounds]
    if len(pairs) != dim or any(len(pair) != 2 or not pair[1] > pair[0] for pair in pairs):
        raise ValueError(f"bounds must be {dim} pairs (low, high) with low < high, got {bounds}")
    return pairs


class GaussianFeatures(nn.Module):
    """``N`` Gaussians with trainable centers, covariances and ``k``-dimensional features.

    Parameters
    ----------
    dim : int
        Dimension ``d`` of the input points (1 for ``x``, 2 for ``(x, y)`` or ``(t, x)``, 3, ...).
    n_gaussians : int
        Number of Gaussians ``N``.
    features : int
        Length ``k`` of each feature vector (the output width).
    bounds : sequence of (low, high), optional
        Box in which the centers are initialized uniformly, one pair per dimension; ``[-1, 1]^d``
        when omitted.
    sigma_init : float
        Initial standard deviation of every Gaussian along every axis, as a fraction of the box
        side length of that axis (so ``0.05`` on ``[-1, 1]`` gives ``sigma = 0.1``).
    covariance : {"full", "diagonal"}
        Train the full Cholesky factor of the precision, or only its diagonal.
    feature_init_std : float
        Standard deviation of the normal initialization of the features.
    normalize : bool
        Divide by ``sum_i G_i(x)`` (partition of unity).
    eps : float
        Added to the normalizing sum.

    Shapes
    ------
    ``forward``: ``(P, d) -> (P, k)``; any leading dimensions ``(..., d) -> (..., k)``.
    """

    def __init__(
        self,
        dim: int,
        n_gaussians: int,
        features: int,
        bounds: Sequence[Sequence[float]] | None = None,
        sigma_init: float = 0.05,
        covariance: str = "full",
        feature_init_std: float = 0.1,
        normalize: bool = False,
        eps: float = 1e-8,
    ):
        super().__init__()
        if dim < 1 or n_gaussians < 1 or features < 1:
            raise ValueError(f"dim, n_gaussians and features must be >= 1, got {dim}, {n_gaussians}, {features}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        check_number("sigma_init", sigma_init, 0.0, low_open=True)
        check_number("feature_init_std", feature_init_std, 0.0)
        box = torch.tensor(box_bounds(dim, bounds))
        self.dim, self.n_gaussians, self.n_features = dim, n_gaussians, features
        self.covariance_type = covariance
        self.normalize, self.eps = normalize, eps

        low, width = box[:, 0], box[:, 1] - box[:, 0]
        self.means = nn.Parameter(low + width * torch.rand(n_gaussians, dim))
        # log of the diagonal of M (precision Cholesky factor): M_jj = 1 / sigma_j
        self.log_precision_diag = nn.Parameter(-torch.log(sigma_init * width).expand(n_gaussians, dim).clone())
        n_off = dim * (dim - 1) // 2
        self.precision_offdiag = nn.Parameter(torch.zeros(n_gaussians, n_off), requires_grad=covariance == "full")
        self.features = nn.Parameter(feature_init_std * torch.randn(n_gaussians, features))
        rows, cols = torch.tril_indices(dim, dim, offset=-1)
        self.register_buffer("_off_rows", rows, persistent=False)
        self.register_buffer("_off_cols", cols, persistent=False)
        rows, cols = torch.triu_indices(dim, dim)
        self.register_buffer("_pair_rows", rows, persistent=False)
        self.register_buffer("_pair_cols", cols, persistent=False)
        self.register_buffer("center", box.mean(dim=1), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, n_gaussians={self.n_gaussians}, features={self.n_features}, "
            f"covariance={self.covariance_type}, normalize={self.normalize}"
        )

    # -- covariance -------------------------------------------------------------------------------
    def precision_factor(self) -> torch.Tensor:
        """Lower-triangular ``M`` with positive diagonal, ``Sigma^{-1} = M M^T``; shape ``(N, d, d)``."""
        m = torch.diag_embed(torch.exp(self.log_precision_diag))
        if self.dim > 1:
            off = m.new_zeros(m.shape)
            off[:, self._off_rows, self._off_cols] = self.precision_offdiag
            m = m + off
        return m

    def precision(self) -> torch.Tensor:
        """``Sigma^{-1} = M M^T``, shape ``(N, d, d)``."""
        m = self.precision_factor()
        return m @ m.transpose(-1, -2)

    def covariance(self) -> torch.Tensor:
        """Covariances ``Sigma_i = (M_i M_i^T)^{-1} = M_i^{-T} M_i^{-1}``, shape ``(N, d, d)``, symmetric positive definite."""
        m = self.precision_factor()
        eye = torch.eye(self.dim, dtype=m.dtype, device=m.device).expand_as(m)
        m_inv = torch.linalg.solve_triangular(m, eye, upper=False)
        return m_inv.transpose(-1, -2) @ m_inv

    # -- evaluation -------------------------------------------------------------------------------
    def quadratic_form(self, x: torch.Tensor) -> torch.Tensor:
        """``q_i(x) = (x - mu_i)^T Sigma_i^{-1} (x - mu_i)``: ``(..., d) -> (..., N)``.

        Expanded as ``x^T A x - 2 b^T x + c`` with ``A = Sigma^{-1}``, ``b = A mu``, ``c = mu^T A mu``
        and computed as one matrix product of the monomials ``(x_a x_b, x_a, 1)`` with the
        ``(d (d + 1) / 2 + d + 1, N)`` coefficients. This never forms a ``(P, N, d)`` tensor, which
        makes the second derivatives that physics-informed losses take by autograd several times
        cheaper. Coordinates are taken relative to the center of ``bounds`` to limit cancellation.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"GaussianFeatures expects points of shape (..., {self.dim}), got {tuple(x.shape)}")
        x = x - self.center
        mu = self.means - self.center
        a = self.precision()  # (N, d, d)
        b = (a @ mu.unsqueeze(-1)).squeeze(-1)  # (N, d)
        c = (mu * b).sum(-1)  # (N,)
        rows, cols = self._pair_rows, self._pair_cols
        factor = torch.where(rows == cols, 1.0, 2.0).to(a.dtype)
        coefficients = torch.cat([a[:, rows, cols] * factor, -2.0 * b, c.unsqueeze(-1)], dim=-1)  # (N, m)
        monomials = torch.cat([x[..., rows] * x[..., cols], x, torch.ones_like(x[..., :1])], dim=-1)  # (..., m)
        return monomials @ coefficients.transpose(0, 1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian values ``G_i(x) = exp(-q_i(x) / 2)``: ``(..., d) -> (..., N)``."""
        return torch.exp(-0.5 * self.quadratic_form(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x) = sum_i G_i(x) f_i``: ``(..., d) -> (..., k)``."""
        w = self.weights(x)
        out = w @ self.features
        if self.normalize:
            out = out / (w.sum(-1, keepdim=True) + self.eps)
        return out
