"""A reduced model behind the same predictor interface as a neural surrogate, for `surrogates-evaluate`.

:class:`ReducedBasisPredictor` has the attributes the evaluation reads from
:class:`~surrogates.serve.surrogate.Surrogate` (``inputs``, ``targets``, ``schema``,
``predict_tensor``): it takes the dataset's per-sample parameter channels (constant fields, one per
parameter component, in the order of the dataset's ``inputs``), solves the reduced model for them and
returns the fields on the dataset grid, so a reduced model is scored by the same metrics on the same
test split as the neural surrogates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from surrogates.solvers.reduced_basis.model import ReducedModel
from surrogates.schema import DataSchema


class ReducedBasisPredictor:
    """Predict ``u`` on the grid from the parameter channels of a dataset sample.

    Parameters
    ----------
    model
        A reduced model built on a structured grid (finite differences, or P1 on the grid's nodes).
    estimator
        Residual-norm evaluation for the error bounds kept in :attr:`last_bounds` (``(B,)``, the X-norm bound of
        each sample of the last call) next to :attr:`last_norms` (``(B,)``, each reduced solution's X-norm).
    """

    def __init__(self, model: ReducedModel, estimator: str = "stable"):
        if model.layout.grid_shape is None:
            raise ValueError("this reduced model lives on an unstructured mesh; it cannot predict grid fields")
        self.model = model
        self.estimator = estimator
        names = list(model.parameter_space.names)
        recorded = list(model.metadata.get("dataset_inputs") or [])
        # the dataset's inputs (coefficient field first, then the parameters) when recorded
        self.inputs = recorded if set(names) <= set(recorded) else names
        self._channels = [self.inputs.index(name) for name in names]
        self.targets = ["u"]
        self.last_bounds: np.ndarray = np.zeros(0)
        self.last_norms: np.ndarray = np.zeros(0)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", estimator: str = "stable") -> "ReducedBasisPredictor":
        """Load a ``*.rb.h5`` file (``device`` is accepted for interface compatibility; solves run on the CPU)."""
        predictor = cls(ReducedModel.load(path), estimator)
        predictor.path = str(path)
        return predictor

    @property
    def schema(self) -> DataSchema:
        """The data the reduced model answers for: its inputs and ``u`` on its grid (no data folder recorded)."""
        return DataSchema(
            pde=str(self.model.metadata.get("pde") or ""),
            inputs=tuple(self.inputs),
            targets=tuple(self.targets),
            spatial_shape=tuple(self.model.layout.grid_shape),
        )

    def predict_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *grid) -> (B, 1, *grid)`` float32; the parameters are read from their constant channels."""
        if x.ndim != 2 + len(self.model.layout.grid_shape) or x.shape[1] != len(self.inputs):
            raise ValueError(f"expected inputs (B, {len(self.inputs)}, *grid) for channels {self.inputs}, got {tuple(x.shape)}")
        if tuple(x.shape[2:]) != tuple(self.model.layout.grid_shape):
            raise ValueError(
                f"the dataset grid {tuple(x.shape[2:])} differs from the reduced model's {self.model.layout.grid_shape}"
            )
        params = x[:, self._channels].flatten(2)
        # averaged in float64: the mean of a constant float32 channel is then its value exactly (in float32 the
        # sum's rounding moved the parameter by ~1e-7 relative)
        mus = params.detach().cpu().double().mean(dim=2).numpy()
        solution = self.model.solve(mus, estimator=self.estimator)
        self.last_bounds = solution.bound
        # the basis is X-orthonormal: ||V c||_X = ||c||, the X-norm of each reduced solution
        self.last_norms = np.linalg.norm(solution.coefficients, axis=1)
        fields = self.model.fields(solution.coefficients)
        return torch.from_numpy(fields[:, None].astype(np.float32))
