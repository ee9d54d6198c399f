"""Time windows for one-step models: n_steps_input states -> the next n_steps_output, rolled out by shifting the window.

Window indexing is checked on a hand-made trajectory whose values name their (trajectory, time, variable);
rollouts on a stand-in network whose closed form is known (Fibonacci numbers); training, the checkpoint,
``RolloutSurrogate``, the rollout evaluation and the service on a tiny windowed run.
"""

from __future__ import annotations

import functools
from pathlib import Path

import httpx
import lightning as L
import numpy as np
import pytest
import torch

from surrogates.data.autoregressive import AutoregressiveDataModule, AutoregressiveDataset
from surrogates.data.schema import DatasetFileError
from surrogates.data.shards import shard_path, split_files
from surrogates.data.writer import write_dataset
from surrogates.evaluation.rollouts import evaluate_rollouts
from surrogates.models.normalized import NormalizedStepper
from surrogates.models.pde_refiner import PDERefiner
from surrogates.serve.rollout import RolloutSurrogate
from surrogates.tasks.autoregressive import Autoregressive
from tests.data.conftest import Coord, Var, base_attrs

TINY = dict(hidden_channels=8, channel_multipliers=[1, 2], norm_groups=4)
T, X = 7, 8  # states per hand-made trajectory, grid points


def value(s: int, t: int, c: int) -> float:
    """The hand-made trajectories' value of trajectory ``s``, time ``t``, variable ``c`` (exact in float32)."""
    return 1000.0 * s + 10.0 * t + c


@pytest.fixture(scope="module")
def handmade(tmp_path_factory) -> Path:
    """Trajectories u, v (sample, time, x) with u[s, t, :] = value(s, t, 0), v = value(s, t, 1), and dt (sample,)."""
    root = tmp_path_factory.mktemp("windows")
    for split, n in (("train", 3), ("val", 2)):
        grid = np.ones(X)
        fields = {
            "u": np.array([[value(s, t, 0) * grid for t in range(T)] for s in range(n)]),
            "v": np.array([[value(s, t, 1) * grid for t in range(T)] for s in range(n)]),
            "dt": np.full(n, 0.5),
        }
        variables = {"u": Var(("time", "x")), "v": Var(("time", "x")), "dt": Var(())}
        coords = {"time": Coord(np.arange(T) * 0.5), "x": Coord(np.arange(X) / X, attrs={"periodic": 1})}
        write_dataset(shard_path(root, split), fields, variables, coords, {**base_attrs("u v dt", "u v"), "split": split})
    return root


# -- indexing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 1), (2, 3)])
def test_window_items_are_consecutive_states_time_major(handmade, n_in, n_out):
    ds = AutoregressiveDataset(split_files(handmade, "train"), ["u", "v"], ["dt"], n_steps_input=n_in, n_steps_output=n_out)
    per_trajectory = T - n_in - n_out + 1
    assert ds.pairs_per_trajectory == per_trajectory and len(ds) == 3 * per_trajectory
    for index in range(len(ds)):
        s, i = divmod(index, per_trajectory)
        item = ds[index]
        assert (item["sample"], item["step"]) == (s, i)
        # time-major channels: u, v of the oldest state first
        x = [value(s, i + k, c) for k in range(n_in) for c in (0, 1)]
        y = [value(s, i + n_in + k, c) for k in range(n_out) for c in (0, 1)]
        np.testing.assert_array_equal(item["x"].numpy(), np.array(x, dtype=np.float32)[:, None].repeat(X, 1))
        np.testing.assert_array_equal(item["y"].numpy(), np.array(y, dtype=np.float32)[:, None].repeat(X, 1))
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_windows_longer_than_the_trajectories_are_refused(handmade):
    with pytest.raises(DatasetFileError, match="windows of 5 \\+ 3 states"):
        AutoregressiveDataset(split_files(handmade, "train"), ["u"], [], n_steps_input=5, n_steps_output=3)
    with pytest.raises(ValueError, match="n_steps_input"):
        AutoregressiveDataset(split_files(handmade, "train"), ["u"], [], n_steps_input=0)


def test_data_schema_records_the_window_only_when_there_is_one(handmade):
    plain = AutoregressiveDataModule(handmade, ["u", "v"], ["dt"])
    assert plain.data_schema().window is None
    windowed = AutoregressiveDataModule(handmade, ["u", "v"], ["dt"], n_steps_input=3, n_steps_output=2)
    assert windowed.data_schema().window == {"inputs": ["u", "v"], "targets": ["u", "v"], "n_steps_input": 3, "n_steps_output": 2}
    assert windowed.data_schema().state == ("u", "v")


# -- rollouts ----------------------------------------------------------------------------------


def fibonacci_model(n_in: int, n_out: int) -> PDERefiner:
    """A window model whose prediction continues x[k] = sum of the previous n_in values (exact in float32)."""
    model = PDERefiner(1, 1, num_refinement_steps=0, n_steps_input=n_in, n_steps_output=n_out, **TINY)

    def predict(window, params=None, generator=None):
        values = list(window.split(1, dim=1))
        for _ in range(n_out):
            values.append(sum(values[-n_in:]))
        return torch.cat(values[n_in:], dim=1)

    model.predict = predict
    return model


@pytest.mark.parametrize("n_in, n_out, expected", [
    (2, 1, [2, 3, 5, 8, 13, 21, 34]),   # Fibonacci from 1, 1
    (2, 2, [2, 3, 5, 8, 13, 21, 34]),   # the same sequence, two states per prediction (the last one cut)
    (2, 3, [2, 3, 5, 8, 13, 21, 34]),
    (3, 1, [3, 5, 9, 17, 31, 57, 105]),  # tribonacci from 1, 1, 1
    (3, 2, [3, 5, 9, 17, 31, 57, 105]),
])
def test_rollout_shifts_the_window_by_the_predicted_states(n_in, n_out, expected):
    model = fibonacci_model(n_in, n_out)
    window = torch.ones(2, n_in, 4)  # (B, n_in C, X), C = 1
    out = model.rollout(window, len(expected))
    assert out.shape == (2, len(expected), 1, 4)
    np.testing.assert_array_equal(out[0, :, 0, 0].numpy(), expected)
    assert model.rollout(window, 0).shape == (2, 0, 1, 4)


def test_default_window_rolls_out_bit_for_bit_as_iterated_predictions():
    """1 -> 1 (the default) is the model of before windows: each prediction is the next input."""
    torch.manual_seed(0)
    model = PDERefiner(2, 2, n_params=1, num_refinement_steps=2, **TINY).eval()
    assert (model.n_steps_input, model.n_steps_output) == (1, 1) and model.unet.in_channels == 4
    state, params = torch.randn(3, 2, 16), torch.ones(3, 1)
    expected, current = [], state
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(4):
            current = model.predict(current, params, generator)
            expected.append(current)
        out = model.rollout(state, 4, params, torch.Generator().manual_seed(5))
    assert torch.equal(out, torch.stack(expected, dim=1))


def test_window_model_checks_its_input_and_normalizes_every_state_alike():
    torch.manual_seed(0)
    net = PDERefiner(2, 2, num_refinement_steps=1, n_steps_input=3, n_steps_output=2, **TINY)
    assert net.unet.in_channels == 10 and net.window_channels == (6, 4)
    assert net.predict(torch.randn(2, 6, 16)).shape == (2, 4, 16)
    with pytest.raises(ValueError, match="6 \\[3 states x 2 channels\\]"):
        net.predict(torch.randn(2, 2, 16))
    with pytest.raises(ValueError, match="n_steps_input"):
        PDERefiner(1, 1, n_steps_input=0, **TINY)
    from surrogates.nn.normalization import Normalizer

    stepper = NormalizedStepper(net, Normalizer.from_stats([1.0, -2.0], [2.0, 4.0]))
    window = torch.randn(2, 6, 16)
    encoded = stepper.encode(window)
    for k in range(3):  # state k of the window is channels 2k, 2k + 1: u and v
        torch.testing.assert_close(encoded[:, 2 * k], (window[:, 2 * k] - 1.0) / 2.0, rtol=0, atol=1e-6)
        torch.testing.assert_close(encoded[:, 2 * k + 1], (window[:, 2 * k + 1] + 2.0) / 4.0, rtol=0, atol=1e-6)
    torch.testing.assert_close(stepper.decode(encoded), window, rtol=0, atol=1e-5)
    trajectories = torch.arange(2 * 5 * 2 * 3, dtype=torch.float32).reshape(2, 5, 2, 3)
    first = stepper.initial_window(trajectories, 1)
    assert torch.equal(first, torch.cat([trajectories[:, 1], trajectories[:, 2], trajectories[:, 3]], dim=1))
    with pytest.raises(ValueError, match="needs 6 states"):
        stepper.initial_window(trajectories, 3)


# -- training, checkpoint, evaluation, service ------------------------------------------------------


@pytest.fixture(scope="module")
def windowed_run(ks_dir, tmp_path_factory):
    """A tiny MSE model trained one epoch on KS windows of 3 states -> 2, with a validation rollout."""
    L.seed_everything(0)
    out = tmp_path_factory.mktemp("windowed")
    datamodule = AutoregressiveDataModule(ks_dir, ["u"], ["dt", "dx"], batch_size=16, n_steps_input=3, n_steps_output=2)
    torch.manual_seed(0)
    net = PDERefiner(1, 1, n_params=2, num_refinement_steps=0, n_steps_input=3, n_steps_output=2, **TINY)
    task = Autoregressive(net, optimizer=functools.partial(torch.optim.Adam, lr=3e-3), rollout_trajectories=2)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=out, filename="best", monitor="val/rel_l2")
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, callbacks=[checkpoint],
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=datamodule)
    return task, datamodule, trainer, Path(checkpoint.best_model_path)


def test_training_on_windows_runs_and_logs_a_rollout_metric(windowed_run):
    task, datamodule, trainer, _ = windowed_run
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["x"].shape == (16, 3, 64) and batch["y"].shape == (16, 2, 64)
    assert np.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert float(trainer.callback_metrics["val/high_corr_time"]) >= 0


def test_task_refuses_a_model_whose_window_differs_from_the_data(ks_dir):
    datamodule = AutoregressiveDataModule(ks_dir, ["u"], ["dt", "dx"], batch_size=8, n_steps_input=2)
    task = Autoregressive(PDERefiner(1, 1, n_params=2, num_refinement_steps=0, **TINY), optimizer=torch.optim.Adam)
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="windows of 1 -> 1 states; the data gives 2 -> 1"):
        trainer.fit(task, datamodule=datamodule)


def test_checkpoint_records_the_window_and_the_surrogate_rolls_out_with_it(windowed_run):
    _, datamodule, _, path = windowed_run
    surrogate = RolloutSurrogate.load(path)
    assert (surrogate.n_steps_input, surrogate.n_steps_output) == (3, 2)
    assert surrogate.schema.window == {"inputs": ["u"], "targets": ["u"], "n_steps_input": 3, "n_steps_output": 2}
    assert surrogate.input_channels == ["u_t0", "u_t1", "u_t2"]
    trajectories, params = datamodule.dataset("test", pairs=False).trajectories()  # (4, 12, 1, 64)
    dt, dx = params[:, 0].numpy(), params[:, 1].numpy()
    history = trajectories[:, :3, 0].numpy()  # (n, n_in, X): one state variable
    out = surrogate.rollout(history, 7, dt=dt, dx=dx)
    assert out.shape == (4, 7, 64) and np.isfinite(out).all()
    with_axis = surrogate.rollout(trajectories[:, :3].numpy(), 7, dt=dt, dx=dx)  # (n, n_in, C, X)
    assert with_axis.shape == (4, 7, 1, 64) and np.array_equal(with_axis[:, :, 0], out)
    assert surrogate.rollout(history[0], 3, dt=dt[0], dx=dx[0]).shape == (3, 64)
    with pytest.raises(ValueError, match="window of 3 states"):
        surrogate.rollout(trajectories[:, 0, 0].numpy(), 2, dt=dt, dx=dx)
    # the model in memory, its one-step-at-a-time iterator and the batch rollout agree bit for bit
    window = surrogate.predictor.initial_window(trajectories)
    tensor = surrogate.rollout_tensor(window, 7, params)
    assert np.array_equal(tensor[:, :, 0].numpy(), out)
    steps = surrogate.rollout_steps(window, params)
    assert all(torch.equal(next(steps), tensor[:, k]) for k in range(7))
    # rollout evaluation: from the first 3 states, compared with states 3 .. 11
    evaluation = evaluate_rollouts(surrogate, trajectories, params, seeds=[0], keep_predictions=True)
    assert np.array_equal(evaluation.first_trajectory, evaluation.predictions[0, 0])
    assert evaluation.predictions.shape == (1, 4, 9, 1, 64)
    assert np.array_equal(evaluation.predictions[0, :, :7, 0], out)
    with pytest.raises(ValueError, match="window of 3 states"):
        evaluate_rollouts(surrogate, trajectories, params, steps=9, start=1)


def test_service_takes_the_window_and_answers_the_surrogate_s_rollout(windowed_run, tmp_path):
    import shutil

    from surrogates.serve.registry import Registry
    from tests.serve.conftest import _serve

    _, datamodule, _, path = windowed_run
    shutil.copy(path, tmp_path / "window.ckpt")
    surrogate = RolloutSurrogate.load(path)
    trajectories, params = datamodule.dataset("test", pairs=False).trajectories()
    history = trajectories[:2, :3, 0].numpy()
    dt, dx = params[:2, 0].numpy(), params[:2, 1].numpy()
    expected = surrogate.rollout(history, 5, dt=dt, dx=dx)
    inputs = {f"u_t{k}": history[:, k].tolist() for k in range(3)} | {"dt": dt.tolist(), "dx": dx.tolist()}
    for server in _serve(Registry.from_folder(tmp_path), max_steps=10):
        with httpx.Client(base_url=server.url, timeout=60) as client:
            info = client.get("/v1/models/window").json()
            assert [v["name"] for v in info["inputs"]] == ["u_t0", "u_t1", "u_t2", "dt", "dx"] and info["rollout"]
            response = client.post("/v1/models/window/predict", json={"inputs": inputs, "steps": 5})
            assert response.status_code == 200, response.text
            got = np.asarray(response.json()["outputs"]["u"], dtype=np.float32)
            assert got.shape == (2, 5, 64) and np.array_equal(got, expected)
            missing = client.post("/v1/models/window/predict", json={"inputs": {"u": history[:, 0].tolist(), "dt": 0.5, "dx": 0.5}})
            assert missing.status_code == 422 and "u_t0" in missing.text
