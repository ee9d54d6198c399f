"""Rollout evaluation reads and keeps a batch of trajectories at a time: what it holds does not grow with their states."""

from __future__ import annotations

import numpy as np
import torch

from surrogates.data.autoregressive import AutoregressiveDataset
from surrogates.data.shards import split_files
from surrogates.evaluation.rollouts import evaluate_rollouts


class _NoisyDecay:
    """A stochastic one-step model: ``u <- 0.95 u + 0.02 noise``, noise drawn from the rollout's seed."""

    stochastic = True
    evaluations_per_step = 2
    n_steps_input = 1

    def rollout_tensor(self, u0: torch.Tensor, steps: int, params: torch.Tensor | None, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(seed))
        states, u = [], u0.float()
        for _ in range(steps):
            u = 0.95 * u + 0.02 * torch.randn(u.shape, generator=generator)
            states.append(u)
        return torch.stack(states, 1)


class _CountingDataset(AutoregressiveDataset):
    """Records how many trajectories each read of whole trajectories asked for."""

    reads: list[int]

    def trajectories(self, samples=None):
        self.reads.append(len(range(self.n_trajectories)) if samples is None else len(samples))
        return super().trajectories(samples)


def _dataset(ks_dir, n: int) -> _CountingDataset:
    dataset = _CountingDataset(split_files(ks_dir, "train"), ["u"], ["dt", "dx"], pairs=False, n_trajectories=n)
    dataset.reads = []
    return dataset


def _kept_values(evaluation) -> int:
    """Numbers held by an evaluation's arrays."""
    arrays = [value for value in vars(evaluation).values() if isinstance(value, np.ndarray)]
    return sum(a.size for a in arrays) + sum(a.size for a in evaluation.high_corr_time.values())


def test_rollouts_of_a_dataset_read_a_batch_at_a_time_and_keep_curves_not_states(ks_dir):
    seeds, batch = [0, 1, 2], 3
    kept = {}
    for n in (6, 16):
        dataset = _dataset(ks_dir, n)
        evaluation = evaluate_rollouts(_NoisyDecay(), dataset, dataset.parameters(), seeds=seeds, batch_size=batch)
        assert max(dataset.reads) <= batch and sum(dataset.reads) == n  # never the whole split at once
        assert evaluation.predictions is None
        steps, state_values = evaluation.corr.shape[2], int(np.prod(dataset.spatial_shape)) * dataset.channels
        assert evaluation.first_trajectory.shape == (steps, dataset.channels, *dataset.spatial_shape)
        # what grows with n is curves (S N T numbers and fewer), never states (C X numbers a step)
        kept[n] = _kept_values(evaluation) - evaluation.first_trajectory.size
        assert kept[n] <= 4 * len(seeds) * n * steps + 2 * state_values
    # per trajectory: fewer numbers than its predicted states of one seed (all seeds' were kept before)
    assert (kept[16] - kept[6]) / 10 < steps * state_values


def test_streamed_rollouts_equal_those_of_the_trajectories_in_memory(ks_dir):
    dataset = _dataset(ks_dir, 16)
    trajectories, params = dataset.trajectories()
    whole = evaluate_rollouts(_NoisyDecay(), trajectories, params, seeds=[0, 1], batch_size=16, keep_predictions=True)
    # the seeds of a batch depend on its first trajectory: the same batches, read from the files
    streamed = evaluate_rollouts(_NoisyDecay(), dataset, dataset.parameters(), seeds=[0, 1], batch_size=16)
    assert torch.equal(dataset.parameters(), params)
    for name in ("corr", "mse", "spread", "first_trajectory"):
        assert np.array_equal(getattr(whole, name), getattr(streamed, name), equal_nan=True), name
    assert np.array_equal(whole.first_trajectory, whole.predictions[0, 0])
    # the spread and first-step spectrum of all the kept predictions, as computed before they were streamed
    predictions = whole.predictions
    var = predictions.std(axis=0, ddof=1) ** 2
    assert np.array_equal(whole.spread, np.sqrt(var.reshape(*var.shape[:2], -1).mean(axis=-1)))
    # in batches of 5: per-trajectory curves are row by row, the same numbers for the same seeds
    batched = evaluate_rollouts(_NoisyDecay(), trajectories, params, seeds=[0, 1], batch_size=5, keep_predictions=True)
    from surrogates import metrics

    first = torch.from_numpy(batched.predictions[:, :, 0])
    reference = trajectories[:, 1].double()
    spectrum = metrics.error_spectrum(first, reference.expand(2, *reference.shape)).numpy()
    assert np.allclose(batched.first_step_spectrum, spectrum, rtol=1e-13, atol=0)
