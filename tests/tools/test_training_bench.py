"""The benchmarks' epoch callback records each epoch's own validation error (tools/_training_bench.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools._training_bench import EpochTimer  # noqa: E402


class _LogsAtEpochEnd(L.LightningModule):
    """Logs ``val/rel_l2 = epoch + 0.5`` in its own ``on_validation_epoch_end``, as the package's tasks do."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch.sum()).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        self.log("val/rel_l2", float(self.current_epoch) + 0.5)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(_Batches(), batch_size=None)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(_Batches(), batch_size=None)


class _Batches(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return torch.ones(2, 1)  # one batch of 2 samples


class _Timer(EpochTimer):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # batches here are plain tensors
        super().on_train_batch_end(trainer, pl_module, outputs, {"x": batch}, batch_idx)


def test_each_epochs_validation_error_is_that_epochs():
    timer = _Timer()
    trainer = L.Trainer(max_epochs=3, callbacks=[timer], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1)
    trainer.fit(_LogsAtEpochEnd())
    assert timer.val_rel_l2 == [0.5, 1.5, 2.5]  # not shifted by one epoch, none from the sanity check
    assert len(timer.epoch_s) == 3 and timer.samples == [4, 4, 4]
