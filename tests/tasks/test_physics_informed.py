"""Physics-informed task: collocation batches, training with Adam and L-BFGS, checkpoints, figures."""

from __future__ import annotations

import functools

import lightning as L
import numpy as np
import pytest
import torch

from surrogates.data.collocation import CollocationDataModule
from surrogates.checkpoint import METADATA_KEY
from surrogates.models.mlp import MLP
from surrogates.models.pig import PIG
from surrogates.pdes.physics import AllenCahn, Helmholtz2D, KleinGordon
from surrogates.tasks.physics_informed import FIGURE_NAME, PhysicsInformed, load_solution, predict_on_points

BOX = [[-1.0, 1.0], [-1.0, 1.0]]


def _datamodule(problem=None, **kwargs):
    problem = problem or Helmholtz2D()
    defaults = dict(n_collocation=64, n_boundary=8, steps_per_epoch=5, eval_resolution=11)
    return CollocationDataModule(problem, inputs=list(problem.coordinates), **{**defaults, **kwargs})


def _trainer(tmp_path, max_steps, **kwargs):
    return L.Trainer(
        max_steps=max_steps, max_epochs=-1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, **kwargs,
    )


def test_collocation_batches():
    dm = _datamodule()
    batch = next(iter(dm.train_dataloader()))
    assert batch["collocation"].shape == (64, 2) and batch["boundary"].shape == (32, 2)
    assert len(list(dm.train_dataloader())) == 5
    assert not torch.equal(dm.next_batch()["collocation"], dm.next_batch()["collocation"])
    fixed = _datamodule(resample=False)
    assert torch.equal(fixed.next_batch()["collocation"], fixed.next_batch()["collocation"])
    reference = next(iter(dm.val_dataloader()))
    assert reference["points"].shape == (121, 2) and reference["u"].shape == (121,)
    with pytest.raises(ValueError, match="coordinates"):
        CollocationDataModule(Helmholtz2D(), inputs=["t", "x"])


def test_reference_cache(tmp_path):
    problem = AllenCahn(reference_modes=64, reference_dt=1e-2)
    first = _datamodule(problem, eval_resolution=[3, 9], data_dir=tmp_path).reference
    (cached,) = tmp_path.glob("allen_cahn-*.npz")
    second = _datamodule(problem, eval_resolution=[3, 9], data_dir=tmp_path).reference
    np.testing.assert_array_equal(first.values, second.values)
    assert second.method == first.method and cached.is_file()


def test_pig_training_reduces_the_loss_keeps_spd_and_checkpoints(tmp_path):
    L.seed_everything(0)
    dm = _datamodule()
    net = PIG(in_channels=2, n_gaussians=40, bounds=BOX, sigma_init=0.1)
    task = PhysicsInformed(
        net, optimizer=functools.partial(torch.optim.Adam, lr=0.02), weights={"residual": 1e-3}, problem=dm.problem
    )
    fixed = dm.sample_batch()
    initial = task.losses(fixed)[0].item()
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/rel_l2")
    trainer = _trainer(tmp_path, 30, callbacks=[checkpoint])
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 30
    assert task.losses(fixed)[0].item() < initial
    eigenvalues = torch.linalg.eigvalsh(net.gaussians.covariance().detach().double())
    assert torch.all(eigenvalues > 0)

    results = trainer.test(task, datamodule=dm, verbose=False)[0]
    assert np.isfinite(results["test/rel_l2"])
    assert (tmp_path / FIGURE_NAME).is_file()

    meta = torch.load(checkpoint.best_model_path, weights_only=True)[METADATA_KEY]
    assert meta["kind"] == "pointwise" and meta["problem"]["name"] == "helmholtz"
    assert meta["data_schema"]["inputs"] == ["x", "y"]
    restored, problem = load_solution(checkpoint.best_model_path)
    assert problem == dm.problem
    points = torch.rand(20, 2) * 2 - 1
    state = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    torch.testing.assert_close(predict_on_points(restored, points), predict_on_points(net, points))


def test_adam_then_lbfgs_phase(tmp_path):
    L.seed_everything(0)
    dm = _datamodule(KleinGordon(), steps_per_epoch=3)
    net = MLP(in_channels=2, width=16, depth=2, bounds=[[0.0, 1.0], [0.0, 1.0]])
    task = PhysicsInformed(
        net, optimizer=functools.partial(torch.optim.Adam, lr=1e-2),
        scheduler=functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.9),
        weights={"residual": 1e-3}, lbfgs_steps=2, lbfgs={"max_iter": 5},
    )
    trainer = _trainer(tmp_path, 6, check_val_every_n_epoch=1)
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 6
    adam, lbfgs = trainer.optimizers
    assert isinstance(lbfgs, torch.optim.LBFGS) and lbfgs.state[lbfgs._params[0]]["n_iter"] > 0
    assert adam.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.9**4)  # the schedule stops with Adam
    assert np.isfinite(float(trainer.callback_metrics["val/rel_l2"]))


def test_network_and_problem_must_agree():
    with pytest.raises(TypeError, match="OperatorModel"):
        PhysicsInformed(torch.nn.Linear(2, 1), optimizer=torch.optim.Adam)
    task = PhysicsInformed(MLP(in_channels=3), optimizer=torch.optim.Adam)
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="coordinates"):
        trainer.fit(task, datamodule=_datamodule())
    task = PhysicsInformed(MLP(in_channels=2, bounds=[[0.0, 1.0], [0.0, 1.0]]), optimizer=torch.optim.Adam)
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="bounds"):
        trainer.fit(task, datamodule=_datamodule())


def _lbfgs_fit(root, ckpt_path=None, callbacks=()):
    """8 steps on Klein-Gordon, the last 4 with L-BFGS; the network's parameters as one vector."""
    L.seed_everything(0)
    dm = _datamodule(KleinGordon(), steps_per_epoch=3)
    net = MLP(in_channels=2, width=8, depth=1, bounds=[[0.0, 1.0], [0.0, 1.0]])
    task = PhysicsInformed(
        net, optimizer=functools.partial(torch.optim.Adam, lr=1e-2), weights={"residual": 1e-3},
        lbfgs_steps=4, lbfgs={"max_iter": 3}, save_figure=False,
    )
    trainer = _trainer(root, 8, callbacks=list(callbacks), num_sanity_val_steps=0)
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_fit_resumed_in_the_lbfgs_phase_ends_where_the_uninterrupted_fit_ends(tmp_path):
    # L-BFGS minimizes over the points of its first step; a resumed fit must keep them, not draw new ones
    every_step = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", filename="{step}", every_n_train_steps=1, save_top_k=-1
    )
    uninterrupted = _lbfgs_fit(tmp_path / "full", callbacks=[every_step])
    resumed = _lbfgs_fit(tmp_path / "resumed", ckpt_path=tmp_path / "checkpoints" / "step=6.ckpt")
    # same operations on the same data in the same order: equal to the bit
    torch.testing.assert_close(resumed, uninterrupted, rtol=0, atol=0)


def test_pig_without_bounds_is_refused_on_another_domain(tmp_path):
    # bounds=None places the Gaussians in [-1, 1]^2: three quarters of them outside Klein-Gordon's (0, 1)^2
    task = PhysicsInformed(PIG(in_channels=2, n_gaussians=4), optimizer=torch.optim.Adam, save_figure=False)
    with pytest.raises(ValueError, match="bounds"):
        _trainer(tmp_path, 1).fit(task, datamodule=_datamodule(KleinGordon()))
    # on Helmholtz's (-1, 1)^2 the default box is the domain
    task = PhysicsInformed(PIG(in_channels=2, n_gaussians=4), optimizer=torch.optim.Adam, save_figure=False)
    trainer = _trainer(tmp_path, 1, limit_val_batches=0)
    trainer.fit(task, datamodule=_datamodule(Helmholtz2D()))
    assert trainer.global_step == 1
