"""Reduced-basis models (``*.rb.h5``): parameters in, the field and its a posteriori error bound out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from surrogates.schema import Variable
from surrogates.serve.entries import ModelEntry, ResolutionRule


def load_reduced_model(path: Path, name: str, device: str) -> ModelEntry:
    """A reduced-basis model (``*.rb.h5``): parameters in, the field ``u`` and its error bound out."""
    from surrogates.solvers.reduced_basis.model import ReducedModel

    model = ReducedModel.load(path)
    grid = model.layout.grid_shape
    if grid is None:
        raise ValueError("the reduced model lives on an unstructured mesh; the service serves grid fields")
    spatial = ["x", "y", "z"][: len(grid)]
    params = list(model.parameter_space.names)
    recorded = [v for v in model.metadata.get("dataset_inputs") or [] if v not in params]
    space = model.parameter_space

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        solution = model.solve(x.astype(np.float64))
        fields = model.fields(solution.coefficients).astype(np.float32)
        return {"u": fields, "error_bound": solution.bound.astype(np.float32)}, {}

    return ModelEntry(
        name=name,
        kind="reduced_basis",
        source=str(path),
        pde=model.metadata.get("pde") or None,
        description=(
            f"reduced basis (N={model.size}) with EIM; parameters {params} in "
            f"[{list(space.lower)}, {list(space.upper)}]; error_bound >= ||u_h - u_N||_X"
        ),
        inputs=[Variable(p, (), long_name=f"parameter {p}") for p in params],
        outputs=[Variable("u", tuple(spatial), long_name="reduced-basis solution"), Variable("error_bound", (), long_name="a posteriori error bound")],
        spatial_dims=spatial,
        resolution=ResolutionRule(policy="none", trained=tuple(grid)),
        batchable=True,
        device="cpu",
        metrics={k: v for k, v in model.metadata.items() if isinstance(v, (int, float, str))},
        ignored_inputs=tuple(recorded),
        runner=run,
    )
