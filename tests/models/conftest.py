"""Helpers for model tests: train any operator briefly with the Lightning task and checkpoint it."""

from __future__ import annotations

import functools
from pathlib import Path


def fit_and_checkpoint(net, data_dir: Path, out_dir: Path, inputs=("a",), targets=("u",), max_epochs: int = 1,
                       **data_kwargs):
    """Train ``net`` with :class:`OperatorRegression` on a fixture dataset; returns (task, best checkpoint path)."""
    import lightning as L
    import torch

    from surrogates.data.datamodule import FieldDataModule
    from surrogates.tasks.operator_regression import OperatorRegression

    L.seed_everything(0)
    datamodule = FieldDataModule(data_dir, inputs=list(inputs), targets=list(targets), batch_size=8, **data_kwargs)
    task = OperatorRegression(net, optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=out_dir, filename="best", monitor="val/rel_l2")
    trainer = L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", logger=False, callbacks=[checkpoint],
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(task, datamodule=datamodule)
    return task, Path(checkpoint.best_model_path)


def assert_surrogate_matches_task(task, checkpoint_path: Path, x) -> None:
    """``Surrogate.load`` rebuilds the model from the checkpoint alone and predicts like the task."""
    import torch

    from surrogates import Surrogate

    surrogate = Surrogate.load(checkpoint_path)
    assert type(surrogate.model) is type(task.net)
    assert surrogate.model.init_kwargs == task.net.init_kwargs
    task.eval()
    with torch.no_grad():
        expected = task(x)
    torch.testing.assert_close(surrogate.predict_tensor(x), expected, rtol=1e-5, atol=1e-6)
