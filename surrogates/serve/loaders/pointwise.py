"""Pointwise checkpoints: physics-informed coordinate networks (PIG, PINN) queried at points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from surrogates.schema import Variable
from surrogates.serve.entries import PointwiseEntry, ResolutionRule
from surrogates.serve.loaders.common import training_metrics


def load_pointwise_checkpoint(path: Path, name: str, device: str, surrogate: Any = None) -> PointwiseEntry:
    """A physics-informed coordinate network (PIG, PINN) through :class:`~surrogates.serve.pointwise.PointwiseSurrogate`.

    Inputs: one scalar per coordinate (``x``, ``y`` ...), so a request of ``n`` samples asks for ``n``
    points; outputs: the solution ``u`` at them. Points are checked like ``PointwiseSurrogate.predict``
    does (NaN, the domain box), and requests are micro-batched along the points.
    ``surrogate``: the file's ``PointwiseSurrogate`` when the caller has loaded it already.
    """
    import torch

    from surrogates.serve.pointwise import PointwiseSurrogate

    surrogate = surrogate or PointwiseSurrogate.load(path, device=device)
    names = list(surrogate.outputs)

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # x: (B, d) points, checked by prepare
        y = surrogate.predict_tensor(torch.from_numpy(np.ascontiguousarray(x))).cpu().numpy()
        return {var: y[:, k] for k, var in enumerate(names)}, {}

    domain = surrogate.domain
    return PointwiseEntry(
        name=name,
        kind="pointwise",
        source=str(path),
        pde=surrogate.pde,
        description=(
            f"{type(surrogate.net).__name__} solution of one {surrogate.pde or 'PDE'} instance on {surrogate.describe_domain()}: "
            f"send the points' coordinates {surrogate.coordinates}, one array each; points outside the box are refused"
        ),
        inputs=[Variable(c, (), long_name=f"coordinate {c} of the query points") for c in surrogate.coordinates],
        outputs=[Variable(v, (), long_name=f"{v} at the query points") for v in names],
        spatial_dims=[],
        resolution=ResolutionRule(policy="none"),
        batchable=True,
        device=str(surrogate.device),
        metrics=training_metrics(path, surrogate.metadata),
        model_config=surrogate.net.init_config() if hasattr(surrogate.net, "init_config") else None,
        runner=run,
        domain=None if domain is None else {c: [lo, hi] for c, (lo, hi) in domain.items()},
        check_domain=surrogate.check_domain,
    )
