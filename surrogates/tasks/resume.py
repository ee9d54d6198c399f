"""Checkpoints a run can resume from exactly: ``last.ckpt`` often, and the random state inside it.

A resumed run must see what the uninterrupted run saw after the checkpoint: the same weights and
optimizer state (Lightning), the same batches (the shuffle of :mod:`surrogates.data.base` is a function
of seed and epoch, and the loaders start at the first batch not yet trained), the same collocation
points (:class:`~surrogates.data.collocation.CollocationDataModule` saves its sampler) and the same draws
of the global generators (noise of PDE-Refiner's loss, dropout): :class:`RandomState`. The
checkpoint callback :class:`RunCheckpoint` writes ``last.ckpt`` at every epoch's end and every
``last_every_n_train_steps`` steps, and keeps the best score when a run resumes into another folder.

Everything saved is tensors and plain data: Lightning and :mod:`surrogates.checkpoint` load
checkpoints with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

__all__ = ["RandomState", "RunCheckpoint", "get_random_state", "set_random_state"]

LAST_NAME = "last"
"""File name (without ``.ckpt``) of the checkpoint a run resumes from."""


# -- global random generators ---------------------------------------------------------------------
def get_random_state() -> dict[str, Any]:
    """The state of torch's (CPU and CUDA), numpy's and Python's global generators, as plain data.

    numpy's state becomes an int64 tensor and lists, Python's a list: a ``weights_only`` load accepts
    tensors and plain containers only.
    """
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Restore the global generators from :func:`get_random_state`'s dict (CUDA when both sides have it)."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    keys = numpy_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomState(Callback):
    """Saves the global generators' state in every checkpoint and restores it when training resumes.

    The state is taken when the checkpoint is written and set again at the start of the resumed fit
    (``on_train_start``: after Lightning's set-up and sanity check, just before the loop continues),
    so the next training step draws the numbers it drew in the uninterrupted run.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return get_random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            set_random_state(self._pending)
            self._pending = None


# -- checkpoints ----------------------------------------------------------------------------------
class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the best checkpoint by a monitored metric) plus a resumable ``last.ckpt``.

    ``last.ckpt`` is written at the end of every training epoch (after its validation and the best
    checkpoint's update, so it holds the current best score) and every ``last_every_n_train_steps``
    steps in between; it is written to a temporary file and renamed, so a run killed while writing
    keeps the previous one.

    Parameters
    ----------
    last_every_n_train_steps
        Also write ``last.ckpt`` after every this many training steps (``0``: at epochs' ends only).
        A step that ends an epoch is saved at the epoch's end instead, after validation.
    save_last
        Write ``last.ckpt`` at all.
    **kwargs
        ``ModelCheckpoint``'s arguments (``dirpath``, ``filename``, ``monitor``, ``mode``, ...).

    Notes
    -----
    The state key is ``ModelCheckpoint``'s, so checkpoints of either class restore each other's best
    score. A run resumed into another folder keeps the best score and the path of the best file (in
    the first folder, left in place) until it improves on it; Lightning's own class drops them.

    A step checkpoint is written before a validation that follows its step inside an epoch
    (``trainer.val_check_interval < 1``): a run killed during that validation and resumed from it is
    not covered by the exactness tests, which validate at epochs' ends (the configs' default).
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int = 0, save_last: bool = True, **kwargs: Any):
        super().__init__(*args, save_last=False, **kwargs)  # last.ckpt is this class's job, not the parent's
        if last_every_n_train_steps < 0:
            raise ValueError(f"last_every_n_train_steps must be >= 0, got {last_every_n_train_steps}")
        self.last_every_n_train_steps = int(last_every_n_train_steps)
        self.write_last = bool(save_last)
        self._last_step_written: int | None = None

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    # -- when ---------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        every, step = self.last_every_n_train_steps, trainer.global_step
        last_of_epoch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        # once a step: with gradient accumulation, the batch that stepped, not the ones accumulating after it
        if every and step % every == 0 and step != self._last_step_written and not last_of_epoch:
            self._write_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # the best checkpoint first: last.ckpt holds its score
        self._write_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self._last_step_written != trainer.global_step:  # stopped inside an epoch (max_steps, time limit)
            self._write_last(trainer)

    # -- how ----------------------------------------------------------------------------------------
    def _write_last(self, trainer: L.Trainer) -> None:
        """Write ``<dirpath>/last.ckpt`` through a temporary file (nothing during sanity checks or fast_dev_run)."""
        if not self.write_last or self.dirpath is None or trainer.fast_dev_run or trainer.sanity_checking:
            return
        path = Path(self.dirpath) / f"{LAST_NAME}{self.FILE_EXTENSION}"
        partial = path.with_name(f".{path.name}.partial")
        self.last_model_path = str(path)  # before saving: it is part of the state
        trainer.save_checkpoint(partial, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(partial, path)
        trainer.strategy.barrier("last checkpoint")
        self._last_step_written = trainer.global_step

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the best score and files; from another folder too (the parent class would drop them)."""
        if state_dict.get("dirpath", self.dirpath) != self.dirpath:
            state_dict = {**state_dict, "dirpath": self.dirpath, "last_model_path": ""}
        super().load_state_dict(state_dict)
