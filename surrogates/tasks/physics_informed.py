"""Physics-informed training of one PDE instance (PINN-style), for any coordinate network.

The loss at a step with interior points ``x_r`` and condition points ``x_c`` is

    L = w_residual mean_r |R[u](x_r)|^2 + sum_c w_c mean |B_c[u](x_c)|^2,

with the residual ``R`` and the conditions ``B_c`` of a :class:`surrogates.pdes.physics.PhysicsProblem`
(derivatives by autograd through the network). Optimization is Adam (with an optional per-step
learning-rate schedule) followed by an optional L-BFGS phase on a fixed set of points, both through
Lightning's manual optimization. Validation and test compare the network with the problem's
reference solution on a grid (relative L2 error); the test also saves a figure of solution,
reference, error and, for physics-informed Gaussians, the Gaussians' centers and shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from surrogates.checkpoint import ClassSpec, construct, read_checkpoint, to_plain
from surrogates.checkpoint.registry import physics_problem_class, physics_problem_name
from surrogates.models.base import OperatorModel
from surrogates.models.pig import PIG
from surrogates.nn.gaussian_features import box_bounds
from surrogates.pdes.physics.base import PhysicsProblem, Reference
from surrogates.plots.physics_informed import plot_solution
from surrogates.tasks.checkpointing import load_metadata, save_metadata
from surrogates.schema import DataSchema

__all__ = ["PhysicsInformed", "load_solution", "predict_on_points"]

FIGURE_NAME = "physics_informed.png"

LBFGS_BATCH_KEY = "lbfgs_batch"
"""Checkpoint entry holding the fixed points of the L-BFGS phase, ``{name: (n, d)}``, once that phase has begun."""


def predict_on_points(net: torch.nn.Module, points: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Network values ``(M,)`` at ``points`` (``(M, d)``), without gradients, in chunks of ``chunk`` points."""
    with torch.no_grad():
        return torch.cat([net(p).reshape(-1) for p in torch.split(points, chunk)])


class PhysicsInformed(L.LightningModule):
    """Fit a coordinate network ``u(x)`` to one PDE instance by minimizing its residual.

    Parameters
    ----------
    net
        The network, an :class:`~surrogates.models.base.OperatorModel` mapping points ``(P, d)`` to
        ``(P, 1)`` (:class:`~surrogates.models.pig.PIG`, :class:`~surrogates.models.mlp.MLP`).
    optimizer
        Partial constructor of the first-phase optimizer (Adam), taking the parameters.
    scheduler
        Optional partial constructor taking the optimizer; stepped after every Adam step.
    weights
        Loss weights by term: ``"residual"`` and the problem's condition names (``"boundary"``,
        ``"initial"``, ``"periodic"``); missing terms weigh 1.
    lbfgs_steps
        Number of final steps taken with L-BFGS instead of Adam (``trainer.max_steps`` must be set);
        each is one ``LBFGS.step`` of up to ``lbfgs["max_iter"]`` inner iterations on the points of the
        first L-BFGS step (kept in checkpoints, so a fit resumed in this phase keeps its objective).
    lbfgs
        Keyword arguments of :class:`torch.optim.LBFGS` (``lr``, ``max_iter``, ``history_size``,
        ``line_search_fn``).
    problem
        The problem; taken from the trainer's data module (``CollocationDataModule``) when omitted.
    eval_chunk
        Points per forward pass when evaluating on the reference grid.
    save_figure
        Write ``physics_informed.png`` (solution, reference, error, Gaussians) to the trainer's
        ``default_root_dir`` after testing.
    """

    def __init__(
        self,
        net: OperatorModel,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weights: Mapping[str, float] | None = None,
        lbfgs_steps: int = 0,
        lbfgs: Mapping[str, Any] | None = None,
        problem: PhysicsProblem | None = None,
        eval_chunk: int = 16384,
        save_figure: bool = True,
    ):
        super().__init__()
        if not isinstance(net, OperatorModel):
            raise TypeError(f"net must be an OperatorModel (it records its constructor), got {type(net).__name__}")
        if lbfgs_steps < 0:
            raise ValueError(f"lbfgs_steps must be >= 0, got {lbfgs_steps}")
        # Hydra passes DictConfigs: saved hyper-parameters must be plain data (checkpoints load with weights_only=True)
        weights, lbfgs = to_plain(weights), to_plain(lbfgs)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "problem"], logger=False)
        self.automatic_optimization = False
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.weights = {str(k): float(v) for k, v in (weights or {}).items()}
        self.lbfgs_steps = int(lbfgs_steps)
        self.lbfgs_kwargs = {"lr": 1.0, "max_iter": 20, "history_size": 50, "line_search_fn": "strong_wolfe"}
        self.lbfgs_kwargs.update(dict(lbfgs or {}))
        self.problem = problem
        self.reference: Reference | None = None
        self.data_schema: DataSchema | None = None
        self.eval_chunk, self.save_figure = int(eval_chunk), bool(save_figure)
        self._lbfgs_batch: dict[str, torch.Tensor] | None = None

    # -- set-up -----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Take the problem, its reference and the data schema from the trainer's data module."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or not hasattr(datamodule, "problem"):
            return
        self.problem = datamodule.problem
        self.reference = datamodule.reference
        self.data_schema = datamodule.data_schema()
        expected = self.net.init_kwargs.get("in_channels")
        if expected != self.problem.dim:
            raise ValueError(f"the network takes {expected} coordinates but {self.problem.name} has {self.problem.dim}")
        bounds = self.net.init_kwargs.get("bounds")
        if bounds is None and isinstance(self.net, PIG):
            # PIG without bounds places its Gaussians in [-1, 1]^d: a box too, which must be the domain
            bounds = box_bounds(self.problem.dim, None)
        if bounds is not None and not np.allclose(np.asarray(bounds, dtype=float), np.asarray(self.problem.bounds())):
            raise ValueError(f"the network's bounds {bounds} differ from the domain of {self.problem.name}: "
                             f"{self.problem.bounds()}; set the network's bounds (model.bounds) to the domain")

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``u`` at ``points``: ``(P, d) -> (P, 1)``."""
        return self.net(points)

    # -- loss -------------------------------------------------------------------------------------
    def losses(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted total loss and the unweighted mean-square term of each residual."""
        if self.problem is None:
            raise RuntimeError("PhysicsInformed needs a problem: pass problem=... or train with a CollocationDataModule")
        points = batch["collocation"].detach().requires_grad_(True)
        terms = {"residual": self.problem.residual(self.net, points).square().mean()}
        conditions = {name: value for name, value in batch.items() if name != "collocation"}
        for name, residual in self.problem.condition_residuals(self.net, conditions).items():
            terms[name] = residual.square().mean()
        total = sum(self.weights.get(name, 1.0) * value for name, value in terms.items())
        return total, terms

    def _in_lbfgs_phase(self) -> bool:
        if self.lbfgs_steps == 0:
            return False
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps < 0:
            raise ValueError("lbfgs_steps > 0 needs trainer.max_steps (the L-BFGS phase is the last lbfgs_steps steps)")
        return self.global_step >= max(0, max_steps - self.lbfgs_steps)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if self._in_lbfgs_phase():
            # L-BFGS needs a deterministic objective: keep the points of its first step
            if self._lbfgs_batch is None:
                self._lbfgs_batch = {k: v.detach().clone() for k, v in batch.items()}
            # restored from a checkpoint on the CPU
            self._lbfgs_batch = {k: v.to(self.device) for k, v in self._lbfgs_batch.items()}
            batch, optimizer = self._lbfgs_batch, optimizers[-1]
            state: dict[str, Any] = {}

            def closure() -> torch.Tensor:
                optimizer.zero_grad()
                loss, terms = self.losses(batch)
                self.manual_backward(loss)
                state["loss"], state["terms"] = loss.detach(), {k: v.detach() for k, v in terms.items()}
                return loss

            optimizer.step(closure=closure)
            loss, terms = state["loss"], state["terms"]
        else:
            optimizer = optimizers[0]
            optimizer.zero_grad()
            loss, terms = self.losses(batch)
            self.manual_backward(loss)
            optimizer.step()
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()
            loss, terms = loss.detach(), {k: v.detach() for k, v in terms.items()}
        self.log("train/loss", loss, prog_bar=True, batch_size=1, sync_dist=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=1)
        return loss

    def configure_optimizers(self) -> Any:
        adam = self.optimizer_factory(params=self.parameters())
        optimizers = [adam]
        if self.lbfgs_steps > 0:
            optimizers.append(torch.optim.LBFGS(self.parameters(), **self.lbfgs_kwargs))
        if self.scheduler_factory is None:
            return optimizers
        return optimizers, [{"scheduler": self.scheduler_factory(optimizer=adam), "interval": "step"}]

    # -- evaluation -------------------------------------------------------------------------------
    def _evaluate(self, stage: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        prediction = predict_on_points(self.net, batch["points"], self.eval_chunk)
        error = torch.linalg.vector_norm(prediction - batch["u"]) / torch.linalg.vector_norm(batch["u"])
        self.log(f"{stage}/rel_l2", error, prog_bar=True, batch_size=1)
        self.log(f"{stage}/max_abs_error", (prediction - batch["u"]).abs().max(), batch_size=1)
        return prediction

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        prediction = self._evaluate("test", batch)
        if self.save_figure and self.reference is not None and self.trainer.is_global_zero:
            path = Path(self.trainer.default_root_dir) / FIGURE_NAME
            names = tuple(self.problem.coordinates) if self.problem is not None else None
            plot_solution(self.net, self.reference, prediction.cpu().numpy(), path, title=self._title(), names=names)

    def _title(self) -> str:
        name = self.problem.name if self.problem is not None else ""
        return f"{name}: {type(self.net).__name__}"

    # -- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Self-describing checkpoint: network constructor, problem, schema, version (no normalization)."""
        problem = None
        if self.problem is not None:
            problem = ClassSpec(physics_problem_name(self.problem), self.problem.config()["kwargs"])
        save_metadata(self, checkpoint, "pointwise", self.data_schema, problem=problem)
        if self._lbfgs_batch is not None:
            # a fit resumed in the L-BFGS phase must minimize the same objective as before the interruption
            checkpoint[LBFGS_BATCH_KEY] = {k: v.detach().cpu().clone() for k, v in self._lbfgs_batch.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = load_metadata(checkpoint)
        batch = checkpoint.get(LBFGS_BATCH_KEY)
        if batch is not None and not (isinstance(batch, dict) and all(isinstance(v, torch.Tensor) for v in batch.values())):
            raise ValueError(f"the checkpoint's {LBFGS_BATCH_KEY!r} must map condition names to tensors of points")
        self._lbfgs_batch = None if batch is None else {str(k): v for k, v in batch.items()}
        self.data_schema = meta.data_schema
        if self.problem is None and meta.problem is not None:
            self.problem = construct(physics_problem_class(meta.problem.name), meta.problem.kwargs, "problem")


def load_solution(path: str | Path) -> tuple[OperatorModel, PhysicsProblem | None]:
    """The trained network (in eval mode) and its problem from a physics-informed checkpoint; no Hydra needed.

    Raises
    ------
    CheckpointError
        When the file cannot be read, is not a pointwise checkpoint, or its metadata is invalid.
    """
    checkpoint = read_checkpoint(path)
    if checkpoint.kind != "pointwise":
        from surrogates.errors import CheckpointError

        raise CheckpointError(path, f"holds a {checkpoint.kind!r} model, not a physics-informed (pointwise) one")
    return checkpoint.build_model(), checkpoint.build_problem()
