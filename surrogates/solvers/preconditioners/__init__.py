"""Preconditioners for :func:`surrogates.solvers.pcg.pcg`, all behind :class:`Preconditioner`.

| name | class | set-up |
|---|---|---|
| none | :class:`IdentityPreconditioner` | nothing |
| Jacobi | :class:`JacobiPreconditioner` | the diagonal |
| IC(0) | :class:`IC0Preconditioner` | incomplete Cholesky on ``tril(A)``'s pattern |
| AMG | :class:`AMGPreconditioner` | pyamg smoothed-aggregation hierarchy, applied as a torch V-cycle |
| learned | :class:`LearnedPreconditioner` | a trained GNN predicting ``L`` (``P = L L^T``) |

IC(0) and the learned preconditioner share :class:`FactoredPreconditioner` (``M = L L^T`` from a given ``L``).

The learned preconditioner imports torch-geometric; it is loaded from its own module.
"""

from surrogates.solvers.preconditioners.amg import AMGPreconditioner
from surrogates.solvers.preconditioners.base import IdentityPreconditioner, Preconditioner
from surrogates.solvers.preconditioners.factored import FactoredPreconditioner
from surrogates.solvers.preconditioners.ic0 import IC0Preconditioner
from surrogates.solvers.preconditioners.jacobi import JacobiPreconditioner

__all__ = [
    "AMGPreconditioner",
    "FactoredPreconditioner",
    "IC0Preconditioner",
    "IdentityPreconditioner",
    "JacobiPreconditioner",
    "Preconditioner",
]
