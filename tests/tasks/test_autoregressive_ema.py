"""The autoregressive task's weight average (EMA) and its rollout validation metric."""

from __future__ import annotations

import functools

import lightning as L
import numpy as np
import pytest
import torch

from surrogates.checkpoint import read_checkpoint
from surrogates.data.autoregressive import AutoregressiveDataModule
from surrogates.metrics import high_correlation_time
from surrogates.serve.rollout import RolloutSurrogate
from surrogates.tasks.autoregressive import Autoregressive
from tests.tasks.test_pde_refiner import tiny_model


def _task(k: int = 2, **kwargs) -> Autoregressive:
    return Autoregressive(tiny_model(k), optimizer=functools.partial(torch.optim.Adam, lr=1e-3), **kwargs)


def test_the_average_follows_its_recurrence():
    decay = 0.9
    task = _task(ema_decay=decay)
    history = []
    for step in range(3):  # three "optimizer steps": new weights, then the task's update hook
        with torch.no_grad():
            for p in task.net.parameters():
                p.add_(1.0 + step)
        history.append([p.detach().clone() for p in task.net.parameters()])
        task.on_train_batch_end(None, None, step)
    # the first update copies the weights; later ones are a <- decay a + (1 - decay) w
    expected = history[0]
    for weights in history[1:]:
        expected = [decay * a + (1 - decay) * w for a, w in zip(expected, weights)]
    for average, value in zip(task.ema.module.parameters(), expected):
        # a handful of float32 multiply-adds per entry: a few eps32 of the entries' size
        torch.testing.assert_close(average, value, rtol=8 * torch.finfo(torch.float32).eps, atol=0)
    task.train()
    assert task.evaluated_net is task.net
    task.eval()
    assert task.evaluated_net is task.ema.module


class _StepRecorder(L.Callback):
    """Records the network's weights after every optimizer step (a post-step hook on the optimizer)."""

    def __init__(self):
        self.weights: list[list[torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module):
        def record(optimizer, args, kwargs):
            self.weights.append([p.detach().clone() for p in pl_module.net.parameters()])

        trainer.optimizers[0].register_step_post_hook(record)


def test_with_gradient_accumulation_the_average_follows_optimizer_steps_not_batches(ks_dir):
    decay = 0.8
    task = _task(k=0, ema_decay=decay)
    recorder = _StepRecorder()
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=6, limit_val_batches=0, accumulate_grad_batches=2,
        callbacks=[recorder],
    )
    trainer.fit(task, datamodule=AutoregressiveDataModule(ks_dir, inputs=["u"], conditioning=["dt", "dx"], batch_size=4))
    assert trainer.global_step == len(recorder.weights) == 3
    assert int(task.ema.n_averaged) == 3  # one update per step (6 batches: 6 updates without the check)
    expected = recorder.weights[0]
    for weights in recorder.weights[1:]:
        expected = [decay * a + (1 - decay) * w for a, w in zip(expected, weights)]
    for average, value in zip(task.ema.module.parameters(), expected):
        # two float32 multiply-adds per entry and step: a few eps32 of the entries' size
        eps = torch.finfo(torch.float32).eps
        torch.testing.assert_close(average, value, rtol=8 * eps, atol=8 * eps * float(value.abs().max()))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        _task(ema_decay=1.0)
    with pytest.raises(ValueError, match="rollout_trajectories"):
        _task(rollout_trajectories=-1)


@pytest.fixture(scope="module")
def trained(ks_dir, tmp_path_factory):
    L.seed_everything(0)
    datamodule = AutoregressiveDataModule(ks_dir, inputs=["u"], conditioning=["dt", "dx"], batch_size=16)
    task = _task(ema_decay=0.5, rollout_trajectories=3)
    folder = tmp_path_factory.mktemp("ema")
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=folder, filename="best", monitor="val/high_corr_time", mode="max")
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, callbacks=[checkpoint], enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=4,
    )
    trainer.fit(task, datamodule=datamodule)
    return task, datamodule, trainer, checkpoint.best_model_path


def test_rollout_metric_is_the_high_correlation_time_of_the_validation_rollouts(trained):
    task, datamodule, trainer, _ = trained
    logged = float(trainer.callback_metrics["val/high_corr_time"])
    states, params = datamodule.dataset("val", pairs=False).trajectories(range(3))
    task.eval()
    generator = torch.Generator().manual_seed(task.hparams.eval_seed)
    pred = task.rollout(states[:, 0], states.shape[1] - 1, params, generator)
    expected = high_correlation_time(pred.double(), states[:, 1:].double(), params[:, 0], 0.8).mean().item()
    # the same computation on the same weights; the logged value went through float32
    assert logged == pytest.approx(expected, rel=4 * float(np.finfo(np.float32).eps))
    assert 0 <= logged <= float((states.shape[1] - 1) * params[:, 0].max())


def test_the_checkpoint_serves_the_average(trained):
    task, datamodule, _, path = trained
    checkpoint = read_checkpoint(path)
    assert checkpoint.inference_prefix == "ema.module."
    assert any(not torch.equal(checkpoint.state_dict["model.net." + k], v) for k, v in checkpoint.network_state("ema.module.").items())
    surrogate = RolloutSurrogate.load(path)
    for key, value in surrogate.model.state_dict().items():
        assert torch.equal(value, checkpoint.state_dict["ema.module." + key])
    # and predicts what the task predicts in evaluation mode (the average), seed for seed
    reloaded = Autoregressive.load_from_checkpoint(path, net=tiny_model(2), optimizer=torch.optim.Adam).eval()
    states, params = datamodule.dataset("test", pairs=False).trajectories()
    direct = reloaded.rollout(states[:, 0], 4, params, torch.Generator().manual_seed(3))[:, :, 0].numpy()
    served = surrogate.rollout(states[:, 0, 0].numpy(), 4, seed=3, dt=params[:, 0].numpy(), dx=params[:, 1].numpy())
    np.testing.assert_array_equal(served, direct)
