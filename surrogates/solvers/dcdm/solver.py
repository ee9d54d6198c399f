"""A configured DCDM solver (the ``conf/solver/dcdm.yaml`` node): a trained network and the iteration's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates.solvers.dcdm.iteration import DCDMResult, dcdm
from surrogates.solvers.dcdm.network import DCDMNet, load

__all__ = ["DCDMSolver"]


class DCDMSolver:
    """DCDM with a network read from a checkpoint (on first use) and fixed settings.

    Parameters
    ----------
    checkpoint
        File written by :meth:`DCDMNet.save` (``tools/train_dcdm.py``); may be None if ``network`` is given.
    network
        A network in memory instead of a file.
    device
        Where the network runs (``"cpu"``, ``"cuda"``); the solve runs on the right-hand sides' device.
    rtol, atol, maxiter, keep
        As in :func:`~surrogates.solvers.dcdm.iteration.dcdm`.
    """

    def __init__(self, checkpoint: str | Path | None = None, network: DCDMNet | None = None, device: str = "cpu",
                 rtol: float = 1e-6, atol: float = 0.0, maxiter: int | None = None, keep: int = 2):
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.device = torch.device(device)
        self.rtol, self.atol, self.maxiter, self.keep = float(rtol), float(atol), maxiter, int(keep)
        self._network = None if network is None else network.to(self.device).eval()

    @property
    def network(self) -> DCDMNet:
        """The network (loaded from ``checkpoint`` on first access)."""
        if self._network is None:
            if self.checkpoint is None:
                raise ValueError("DCDMSolver needs a checkpoint (train one with tools/train_dcdm.py) or a network")
            self._network = load(self.checkpoint, self.device)
        return self._network

    def solve(self, A: Any, b: torch.Tensor | np.ndarray, x0: torch.Tensor | np.ndarray | None = None) -> DCDMResult:
        """Solve ``A x = b`` for ``b`` of shape ``(n,)`` or ``(B, n)``; see :func:`~surrogates.solvers.dcdm.iteration.dcdm`."""
        return dcdm(A, b, self.network, x0=x0, rtol=self.rtol, atol=self.atol, maxiter=self.maxiter, keep=self.keep)
