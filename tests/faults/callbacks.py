"""Callbacks that only the fault tests use: a per-step loss record and a run that kills itself."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class RecordSteps(Callback):
    """Append ``<global step> <loss as float.hex>`` after every training step to ``path``, flushed at once.

    The hexadecimal form keeps every bit; a process killed with SIGKILL keeps every line written.
    """

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        with self.path.open("a") as file:
            file.write(f"{trainer.global_step} {float(loss).hex()}\n")


class KillAtStep(Callback):
    """SIGKILL this process when training is about to take step ``step + 1`` (``step`` steps done).

    Nothing runs after the signal (no ``finally``, no Lightning hook): the run ends as a power cut
    or the out-of-memory killer would end it.
    """

    def __init__(self, step: int):
        self.step = int(step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
