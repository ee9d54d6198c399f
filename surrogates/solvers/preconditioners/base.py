"""The one interface every preconditioner implements: apply ``M^{-1}`` to a batch of residuals."""

from __future__ import annotations

import abc

import torch


class Preconditioner(abc.ABC):
    """An SPD approximation ``M`` of ``A``; :meth:`apply` computes ``z = M^{-1} r``.

    Preconditioners are set up from assembled matrices (scipy CSR, on the CPU) and applied in torch
    on the device and dtype they were moved to with :meth:`to`, so that the PCG loop never leaves
    torch. ``M^{-1}`` must be symmetric positive definite for CG to converge.
    """

    name: str = "preconditioner"
    elementwise: bool = False
    """``M^{-1}`` acts entry by entry (identity, Jacobi): a batch of right-hand sides shares no work in it,
    so on the CPU :func:`~surrogates.solvers.pcg.pcg` solves large systems one by one (cache-friendlier)."""

    @abc.abstractmethod
    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """Apply ``M^{-1}``.

        Parameters
        ----------
        r
            Residuals, shape ``(B, n)``: one row per system of the batch.

        Returns
        -------
        torch.Tensor
            ``M^{-1} r``, shape ``(B, n)``, same device and dtype as ``r``.
        """

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Preconditioner":
        """Move the preconditioner's tensors; returns ``self``. Subclasses holding tensors override it."""
        return self

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.apply(r)


class IdentityPreconditioner(Preconditioner):
    """``M = I``: plain conjugate gradient."""

    name = "none"
    elementwise = True

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        return r
