"""`CollocationDataModule`: the "data" of physics-informed training of one PDE instance.

A physics-informed network sees no solution data. Each training step gets a batch of points: interior
collocation points for the PDE residual and points on the boundary / at the initial time for the side
conditions, drawn by the problem (:class:`surrogates.pdes.physics.PhysicsProblem`). Validation and
test batches are the reference solution on a grid, for the relative L2 error.

The point sampler's state travels in the checkpoint (:meth:`CollocationDataModule.state_dict`), and a
fit resumed mid-epoch draws only the epoch's remaining steps: a resumed run trains on the points the
uninterrupted run drew.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from surrogates.data.base import training_position
from surrogates.pdes.physics.base import PhysicsProblem, Reference
from surrogates.schema import DataSchema

__all__ = ["CollocationDataModule"]


class _CollocationBatches(IterableDataset):
    """``steps_per_epoch`` batches ``{"collocation": (n, d), "<condition>": (n_c, d), ...}`` per epoch.

    The first pass starts at step ``start`` (a fit resumed mid-epoch), later passes at 0.
    """

    def __init__(self, module: "CollocationDataModule", start: int = 0):
        self.module = module
        self.start = int(start)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        start, self.start = self.start, 0
        self.module._begin_pass(start)
        for _ in range(start, self.module.steps_per_epoch):
            yield self.module.next_batch()


class CollocationDataModule(L.LightningDataModule):
    """Collocation batches for training, the reference solution for validation and test.

    Parameters
    ----------
    problem
        The physics-informed problem.
    inputs
        Names of the input coordinates; must equal ``problem.coordinates`` (they also fix the
        network's input width in the configs).
    targets
        Names of the solution components (``["u"]``).
    n_collocation
        Interior points per step.
    n_boundary
        Points per boundary face / initial condition per step.
    resample
        Draw fresh points every step (``True``) or reuse one fixed set (``False``).
    steps_per_epoch
        Training steps between two validations (an "epoch" has no other meaning here).
    eval_resolution
        Points per coordinate of the evaluation grid (an int for all, or one per coordinate).
    data_dir
        Optional folder where reference solutions are cached (``<name>-<hash>.npz``), so that a sweep
        computes each one once; ``None`` computes it in memory every time.
    seed
        Seed of the point sampler.
    """

    def __init__(
        self,
        problem: PhysicsProblem,
        inputs: Sequence[str],
        targets: Sequence[str] = ("u",),
        n_collocation: int = 2000,
        n_boundary: int = 250,
        resample: bool = True,
        steps_per_epoch: int = 250,
        eval_resolution: int | Sequence[int] = 101,
        data_dir: str | Path | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if list(inputs) != list(problem.coordinates):
            raise ValueError(f"inputs {list(inputs)} must equal the problem's coordinates {list(problem.coordinates)}")
        if n_collocation < 1 or n_boundary < 1 or steps_per_epoch < 1:
            raise ValueError("n_collocation, n_boundary and steps_per_epoch must be >= 1")
        self.problem = problem
        self.inputs, self.targets = list(inputs), list(targets)
        self.n_collocation, self.n_boundary = int(n_collocation), int(n_boundary)
        self.resample, self.steps_per_epoch = bool(resample), int(steps_per_epoch)
        self.eval_resolution = eval_resolution if isinstance(eval_resolution, int) else [int(r) for r in eval_resolution]
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._fixed: dict[str, torch.Tensor] | None = None
        # The sampler's state before each batch of the current pass, by step: the loader draws ahead
        # of training, and a checkpoint must hold the state before the first batch not yet trained.
        self._states_before: dict[int, torch.Tensor] = {}
        self._next_step = 0
        self._reference: Reference | None = None

    # -- training points ---------------------------------------------------------------------------
    def sample_batch(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Fresh points: ``{"collocation": (n_collocation, d), <condition>: (n_c, d)}``.

        Drawn from ``generator``, by default the module's sampler (:attr:`generator`).
        """
        generator = self.generator if generator is None else generator
        batch = {"collocation": self.problem.sample_collocation(self.n_collocation, generator)}
        batch.update(self.problem.sample_conditions(self.n_boundary, generator))
        return batch

    def next_batch(self) -> dict[str, torch.Tensor]:
        """The batch of the next step: fresh points, or the fixed set when ``resample=False``.

        The fixed set is the first draw of the seed, so a resumed run draws the same set again.
        """
        self._states_before[self._next_step] = self.generator.get_state()
        self._states_before.pop(self._next_step - 8, None)  # Lightning draws one batch ahead; keep a few
        self._next_step += 1
        if self.resample:
            return self.sample_batch()
        if self._fixed is None:
            self._fixed = self.sample_batch(torch.Generator().manual_seed(self.seed))
        return self._fixed

    def _begin_pass(self, start: int) -> None:
        """A pass over the training steps begins at step ``start`` of the epoch."""
        self._states_before = {}
        self._next_step = start

    # -- checkpoint --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The point sampler's state before the first batch not yet trained (saved in checkpoints)."""
        # mid-epoch: the batches trained so far; at an epoch's end (or outside a fit): every batch drawn
        trained = training_position(self.trainer)[1] or self._next_step
        state = self._states_before.get(trained, self.generator.get_state())
        return {"generator": state.clone()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the point sampler (Lightning calls this when a fit resumes from a checkpoint)."""
        self.generator.set_state(state_dict["generator"])

    # -- reference ---------------------------------------------------------------------------------
    @property
    def reference(self) -> Reference:
        """The reference solution on the evaluation grid (computed once, cached under ``data_dir``)."""
        if self._reference is None:
            self._reference = self._load_or_compute_reference()
        return self._reference

    def _load_or_compute_reference(self) -> Reference:
        if self.data_dir is None:
            return self.problem.reference(self.eval_resolution)
        key = json.dumps({"problem": self.problem.config(), "resolution": self.eval_resolution}, sort_keys=True)
        path = self.data_dir / f"{self.problem.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                d = len(self.problem.coordinates)
                return Reference([f[f"coord{i}"] for i in range(d)], f["values"], str(f["method"]))
        reference = self.problem.reference(self.eval_resolution)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        coords = {f"coord{i}": c for i, c in enumerate(reference.coords)}
        np.savez(tmp, values=reference.values, method=np.array(reference.method), **coords)
        tmp.replace(path)  # atomic: a half-written cache is never read
        return reference

    def reference_batch(self) -> dict[str, torch.Tensor]:
        """``{"points": (M, d), "u": (M,)}`` on the evaluation grid (default dtype)."""
        reference = self.reference
        dtype = torch.get_default_dtype()
        return {
            "points": torch.as_tensor(reference.points(), dtype=dtype),
            "u": torch.as_tensor(reference.values.reshape(-1), dtype=dtype),
        }

    def data_schema(self) -> DataSchema:
        """What a checkpoint records about the problem: a ``pointwise`` :class:`~surrogates.schema.DataSchema`
        with the box (coordinate -> bounds), the targets, the problem's config and the reference resolution."""
        return DataSchema(
            kind="pointwise",
            inputs=tuple(self.inputs),
            targets=tuple(self.targets),
            bounds={name: (float(lo), float(hi)) for name, (lo, hi) in zip(self.problem.coordinates, self.problem.bounds())},
            problem=self.problem.config(),
            eval_resolution=self.eval_resolution,
        )

    # -- loaders -----------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """``steps_per_epoch`` batches of points per epoch; a resumed fit starts at its first untrained step."""
        return DataLoader(_CollocationBatches(self, start=training_position(self.trainer)[1]), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader([self.reference_batch()], batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
