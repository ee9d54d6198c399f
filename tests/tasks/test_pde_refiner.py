"""PDE-Refiner and its MSE baseline: noise schedule, training steps, checkpoint round trip, rollouts."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from surrogates.data.autoregressive import AutoregressiveDataModule
from surrogates.checkpoint import build_model
from surrogates.models.pde_refiner import PDERefiner, noise_schedule
from surrogates.serve.rollout import RolloutSurrogate, is_rollout_checkpoint
from surrogates.serve.surrogate import CheckpointError
from surrogates.tasks.autoregressive import Autoregressive

TINY = dict(hidden_channels=8, channel_multipliers=[1, 2], norm_groups=4)


def tiny_model(k: int = 3, **kwargs) -> PDERefiner:
    torch.manual_seed(0)
    return PDERefiner(1, 1, n_params=2, num_refinement_steps=k, **{**TINY, **kwargs})


# -- noise schedule ----------------------------------------------------------------------------


@pytest.mark.parametrize("k_max, min_std", [(3, 2e-7), (3, 6.3e-4), (4, 1e-6), (1, 1e-2)])
def test_noise_schedule_is_geometric_from_one_to_the_minimum(k_max, min_std):
    sigma = noise_schedule(k_max, min_std)
    assert sigma.shape == (k_max + 1,) and sigma.dtype == torch.float64
    for k in range(k_max + 1):  # the definition, term by term
        assert sigma[k].item() == pytest.approx(min_std ** (k / k_max), rel=1e-12)
    assert sigma[0] == 1.0 and sigma[-1].item() == pytest.approx(min_std, rel=1e-12)
    ratios = sigma[1:] / sigma[:-1]  # constant ratio min_std^(1/K)
    torch.testing.assert_close(ratios, torch.full_like(ratios, min_std ** (1 / k_max)), rtol=1e-10, atol=0)


def test_noise_schedule_rejects_bad_arguments():
    assert noise_schedule(0, 1e-3).tolist() == [1.0]
    with pytest.raises(ValueError, match="min_noise_std"):
        noise_schedule(3, 0.0)
    with pytest.raises(ValueError, match="num_refinement_steps"):
        noise_schedule(-1, 1e-3)


def test_reference_ddpm_betas_give_the_square_root_of_their_minimum_as_std():
    """The authors' code passes min_noise_std^(j/K) as DDPM betas (variances): its std at step k is
    within 1 % of sqrt(min)^(k/K), i.e. our schedule with min_noise_std = sqrt(theirs)."""
    k_max, theirs = 3, 4e-7
    betas = torch.tensor([theirs ** (j / k_max) for j in reversed(range(k_max + 1))], dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)  # DDPM timestep j = K - k
    ours = noise_schedule(k_max, math.sqrt(theirs))
    for k in range(1, k_max + 1):
        std = torch.sqrt(1 - alphas_cumprod[k_max - k])
        assert std.item() == pytest.approx(ours[k].item(), rel=1e-2)
    assert alphas_cumprod[k_max] == 0  # step k = 0: pure noise, i.e. a plain prediction


def test_model_uses_the_schedule_and_costs_k_plus_one_evaluations():
    model = tiny_model(3, min_noise_std=1e-3)
    torch.testing.assert_close(model.sigmas, noise_schedule(3, 1e-3).float())
    calls = []
    model.unet.register_forward_hook(lambda *args: calls.append(1))
    model.predict(torch.randn(2, 1, 32), torch.ones(2, 2))
    assert len(calls) == 4 == model.evaluations_per_step
    assert tiny_model(0).evaluations_per_step == 1


def test_refinement_step_subtracts_the_predicted_noise():
    """With a denoiser that returns the exact noise, every refinement step gives the first estimate back."""
    model = tiny_model(2, min_noise_std=1e-2)
    state, params = torch.randn(3, 1, 16), torch.ones(3, 2)
    first = torch.randn(3, 1, 16)
    levels = []

    def exact_denoiser(s, estimate, k, p):
        step = int(k[0])
        if step == 0:
            return first
        levels.append((estimate - first).std().item() / model.sigmas[step].item())
        return (estimate - first) / model.sigmas[step]

    model.denoiser = exact_denoiser
    out = model.predict(state, params, torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, first, rtol=0, atol=1e-6)
    assert len(levels) == 2 and all(0.5 < level < 1.5 for level in levels)  # noise of std sigma_k at step k


def test_refinement_estimates_end_with_the_prediction():
    """One estimate per step k = 0 .. K; the last is predict's answer for the same noise, the first the k = 0 output."""
    model = tiny_model(3).eval()
    state, params = torch.randn(2, 1, 32), torch.ones(2, 2)
    with torch.no_grad():
        estimates = model.refinement_estimates(state, params, torch.Generator().manual_seed(5))
        prediction = model.predict(state, params, torch.Generator().manual_seed(5))
        first = model.denoiser(state, torch.zeros_like(state), torch.zeros(2, dtype=torch.long), params)
    assert len(estimates) == 4 and all(e.shape == state.shape for e in estimates)
    assert torch.equal(estimates[-1], prediction) and torch.equal(estimates[0], first)
    assert not torch.equal(estimates[1], estimates[0])


def test_loss_targets_follow_the_sampled_step():
    """k = 0: the network's target is the next state from a zero estimate; k > 0: the noise."""
    model = tiny_model(3)
    seen = {}

    def fake_denoiser(state, estimate, k, params):
        seen.update(estimate=estimate, k=k)
        return torch.zeros_like(estimate)

    model.denoiser = fake_denoiser
    state, target = torch.randn(64, 1, 16), torch.randn(64, 1, 16) + 5.0
    generator = torch.Generator().manual_seed(0)
    loss = model.loss(state, target, torch.ones(64, 2), generator)
    k = seen["k"]
    assert set(k.tolist()) == {0, 1, 2, 3}
    zero = k == 0
    assert torch.all(seen["estimate"][zero] == 0)
    sigma = model.sigmas[k[~zero]].view(-1, 1, 1)
    noise = (seen["estimate"][~zero] - target[~zero]) / sigma
    assert noise.abs().max() < 8 and 0.5 < noise.std() < 1.5  # unit Gaussian noise at level sigma_k
    expected = torch.cat([target[zero].pow(2).flatten(), noise.pow(2).flatten()]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-3)


@pytest.mark.parametrize("probability", [None, 0.5, 0.1])
def test_training_steps_are_drawn_with_the_first_step_probability(probability):
    """k = 0 with the given probability, the refinement steps equally often; None: uniform over 0..K."""
    model = tiny_model(3, first_step_probability=probability)
    draws = 40_000
    k = model._draw_steps(draws, torch.Generator().manual_seed(0), "cpu")
    share = torch.bincount(k, minlength=4).double() / draws
    p0 = 0.25 if probability is None else probability
    expected = torch.tensor([p0] + [(1 - p0) / 3] * 3, dtype=torch.float64)
    tolerance = 4 * torch.sqrt(expected * (1 - expected) / draws)  # four binomial standard deviations
    assert torch.all((share - expected).abs() < tolerance), (share, expected)
    assert model.init_config()["kwargs"]["first_step_probability"] == probability


def test_uniform_first_step_probability_keeps_the_paper_s_draw():
    """Passing 1/(K+1) explicitly draws the same steps as the default (checkpoints train identically)."""
    default, explicit = tiny_model(3), tiny_model(3, first_step_probability=0.25)
    draw = [m._draw_steps(100, torch.Generator().manual_seed(1), "cpu") for m in (default, explicit)]
    assert torch.equal(draw[0], draw[1])
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="first_step_probability"):
            tiny_model(3, first_step_probability=bad)


def test_model_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="in_channels"):
        PDERefiner(1, 2, **TINY)
    model = tiny_model()
    with pytest.raises(ValueError, match="params"):
        model.predict(torch.randn(2, 1, 16), torch.ones(2, 3))
    with pytest.raises(ValueError, match="state"):
        model.predict(torch.randn(2, 2, 16), torch.ones(2, 2))


# -- training ----------------------------------------------------------------------------------


def fit(ks_dir: Path, out_dir: Path, k: int, epochs: int = 1, lr: float = 3e-3):
    L.seed_everything(0)
    datamodule = AutoregressiveDataModule(ks_dir, ["u"], ["dt", "dx"], batch_size=16)
    task = Autoregressive(tiny_model(k), optimizer=functools.partial(torch.optim.Adam, lr=lr))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=out_dir, filename="best", monitor="val/rel_l2")
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=[checkpoint],
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=datamodule)
    return task, datamodule, trainer, Path(checkpoint.best_model_path)


@pytest.fixture(scope="module")
def refiner_checkpoint(ks_dir, tmp_path_factory):
    return fit(ks_dir, tmp_path_factory.mktemp("refiner"), k=3)


@pytest.mark.parametrize("k", [0, 3])
def test_one_training_step_runs_for_both_tasks(ks_dir, k):
    datamodule = AutoregressiveDataModule(ks_dir, ["u"], ["dt", "dx"], batch_size=8)
    task = Autoregressive(tiny_model(k), optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    before = [p.detach().clone() for p in task.net.parameters()]
    trainer.fit(task, datamodule=datamodule)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.net.parameters()))
    assert np.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert torch.allclose(task.model.state_normalizer.mean, torch.as_tensor(datamodule.state_normalizer.mean))
    assert task.model.param_scale.tolist() == pytest.approx(datamodule.param_scale.tolist())


def test_task_rejects_other_networks():
    from surrogates.models.unet import UNet

    with pytest.raises(TypeError, match="PDERefiner"):
        Autoregressive(UNet(2, 1, dim=1), optimizer=torch.optim.Adam)


def test_checkpoint_round_trip_gives_the_same_rollout(refiner_checkpoint, ks_dir):
    task, datamodule, _, path = refiner_checkpoint
    assert is_rollout_checkpoint(path)
    surrogate = RolloutSurrogate.load(path)
    assert surrogate.refinement_steps == 3 and surrogate.conditioning == ["dt", "dx"]
    assert surrogate.schema.pde == "ks" and surrogate.schema.kind == "trajectory"
    trajectories, params = datamodule.dataset("test", pairs=False).trajectories()
    u0, dt, dx = trajectories[:, 0, 0].numpy(), params[:, 0].numpy(), params[:, 1].numpy()
    first = surrogate.rollout(u0, 15, seed=4, dt=dt, dx=dx)  # longer than the stored trajectories
    assert first.shape == (4, 15, 64) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, surrogate.rollout(u0, 15, seed=4, dt=dt, dx=dx))
    assert not np.array_equal(first, surrogate.rollout(u0, 15, seed=5, dt=dt, dx=dx))

    # the weights in memory (best checkpoint reloaded into the task) give the same rollout
    reloaded = Autoregressive.load_from_checkpoint(path, net=build_model(task.net.init_config()),
                                                   optimizer=torch.optim.Adam)
    generator = torch.Generator().manual_seed(4)
    direct = reloaded.rollout(trajectories[:, 0], 15, params, generator)[:, :, 0].numpy()
    np.testing.assert_allclose(direct, first, rtol=0, atol=1e-5)

    single = surrogate.rollout(u0[0], 3, seed=4, dt=float(dt[0]), dx=float(dx[0]))
    assert single.shape == (3, 64)
    ensemble = surrogate.rollout_ensemble(u0, 4, seeds=[0, 1], dt=dt, dx=dx)
    assert ensemble.shape == (2, 4, 4, 64)


def test_rollout_surrogate_reports_wrong_inputs(refiner_checkpoint, darcy_checkpoint, tmp_path):
    path = refiner_checkpoint[3]
    surrogate = RolloutSurrogate.load(path)
    u0 = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="dx"):
        surrogate.rollout(u0, 2, dt=0.8)
    with pytest.raises(ValueError, match="unknown"):
        surrogate.rollout(u0, 2, dt=0.8, dx=0.5, nu=1.0)
    with pytest.raises(ValueError, match="does not match the model"):
        surrogate.rollout(np.zeros((2, 3, 2, 64)), 2, dt=0.8, dx=0.5)
    with pytest.raises(ValueError, match="NaN"):
        surrogate.rollout(np.full((2, 64), np.nan), 2, dt=0.8, dx=0.5)
    assert not is_rollout_checkpoint(darcy_checkpoint)
    with pytest.raises(CheckpointError, match="not the .rollout. kind"):
        RolloutSurrogate.load(darcy_checkpoint)
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    assert not is_rollout_checkpoint(tmp_path / "junk.ckpt")


def test_mse_baseline_is_deterministic(ks_dir, tmp_path):
    _, datamodule, _, path = fit(ks_dir, tmp_path, k=0)
    surrogate = RolloutSurrogate.load(path)
    assert not surrogate.stochastic and surrogate.evaluations_per_step == 1
    trajectories, params = datamodule.dataset("test", pairs=False).trajectories()
    kwargs = dict(dt=params[:, 0].numpy(), dx=params[:, 1].numpy())
    np.testing.assert_array_equal(surrogate.rollout(trajectories[:, 0, 0].numpy(), 5, seed=0, **kwargs),
                                  surrogate.rollout(trajectories[:, 0, 0].numpy(), 5, seed=1, **kwargs))


@pytest.mark.parametrize("k", [pytest.param(0, marks=pytest.mark.slow), 3])
def test_tiny_training_lowers_the_one_step_error(ks_dir, k):
    L.seed_everything(0)
    datamodule = AutoregressiveDataModule(ks_dir, ["u"], ["dt", "dx"], batch_size=16)
    datamodule.setup("fit")
    task = Autoregressive(tiny_model(k), optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    trainer = L.Trainer(max_epochs=8, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    batch = next(iter(datamodule.test_dataloader()))

    def one_step_error():
        with torch.no_grad():
            task.model.state_normalizer.load_state_dict(datamodule.state_normalizer.state_dict())
            task.model.param_scale.copy_(torch.as_tensor(datamodule.param_scale))
            pred = task(batch["x"], batch["params"], torch.Generator().manual_seed(0))
        return (pred - batch["y"]).pow(2).mean().item()

    before = one_step_error()
    trainer.fit(task, datamodule=datamodule)
    after = one_step_error()
    assert after < 0.5 * before
