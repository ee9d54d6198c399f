"""Deep conjugate direction method (Kaneda et al., ICML 2023): a CNN's directions, A-orthogonalized.

| module | concept |
|---|---|
| :mod:`~surrogates.solvers.dcdm.network` | :class:`DCDMNet`, the recursive U-Net approximating ``A^{-1}`` up to a constant; save/load |
| :mod:`~surrogates.solvers.dcdm.grid` | from a 5-point matrix to the network's channels; :class:`DirectionOperator` |
| :mod:`~surrogates.solvers.dcdm.training_vectors` | Lanczos, Ritz pairs, the paper's weighted training vectors |
| :mod:`~surrogates.solvers.dcdm.training` | the scale-invariant loss and :func:`train_dcdm` |
| :mod:`~surrogates.solvers.dcdm.iteration` | :func:`dcdm`, the iteration (result type of :func:`~surrogates.solvers.pcg.pcg`) |
| :mod:`~surrogates.solvers.dcdm.solver` | :class:`DCDMSolver`, a configured solver (``conf/solver/dcdm.yaml``) |
"""

from surrogates.solvers.dcdm.iteration import DCDMResult, dcdm
from surrogates.solvers.dcdm.network import DCDMNet, load, load_metadata
from surrogates.solvers.dcdm.solver import DCDMSolver
from surrogates.solvers.dcdm.training import scale_invariant_loss, train_dcdm

__all__ = ["DCDMNet", "DCDMResult", "DCDMSolver", "dcdm", "load", "load_metadata", "scale_invariant_loss", "train_dcdm"]
