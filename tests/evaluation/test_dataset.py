"""Dataset evaluation reports every metric of the table, nRMSE among them, as its definition says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogates import metrics
from surrogates.evaluation.dataset import evaluate_dataset


def _nrmse_definition(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PDEBench's nRMSE per sample: ``RMSE / RMS(target)`` of each channel over its points, averaged over channels."""
    axes = tuple(range(2, pred.ndim))
    per_channel = np.sqrt(((pred - target) ** 2).mean(axis=axes)) / np.sqrt((target**2).mean(axis=axes))
    return per_channel.mean(axis=1)


def _fields(seed: int = 0, shape=(5, 2, 8, 6)) -> tuple[torch.Tensor, torch.Tensor]:
    """Channels of very different sizes (1 and 1000, a velocity and a pressure), each with a 30 % error."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 1000.0], dtype=torch.float64).view(1, 2, 1, 1)
    target = scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    pred = target + 0.3 * scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    return pred, target


def test_nrmse_is_rmse_over_the_rms_of_the_target():
    pred, target = _fields()
    expected = _nrmse_definition(pred.numpy(), target.numpy())
    # float64 throughout: the two formulas differ by round-off only
    np.testing.assert_allclose(metrics.nrmse(pred, target).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.compute_metric("nrmse", pred, target).numpy(), expected, rtol=1e-12)


def test_nrmse_weighs_every_channel_alike():
    pred, target = _fields()
    worse = pred.clone()
    worse[:, 0] = target[:, 0] + 2 * (pred[:, 0] - target[:, 0])  # twice the error in the small channel only
    # per channel: the small channel's share doubles; pooled over channels, the change would hardly show
    half_gain = 0.5 * metrics.relative_l2(pred[:, :1], target[:, :1])
    np.testing.assert_allclose((metrics.nrmse(worse, target) - metrics.nrmse(pred, target)).numpy(), half_gain.numpy(), rtol=1e-12)
    one = target[:, :1]
    np.testing.assert_allclose(metrics.nrmse(pred[:, :1], one).numpy(), metrics.relative_l2(pred[:, :1], one).numpy(), rtol=1e-12)


def test_nrmse_is_in_the_metric_table():
    assert metrics.METRICS["nrmse"] is metrics.nrmse


def test_evaluate_dataset_reports_nrmse_of_every_sample():
    pred, target = _fields(seed=1)
    shift = pred - target  # the predictor adds a fixed error to each sample's input (= its target)
    dataset = [{"x": target[i], "y": target[i]} for i in range(len(target))]

    def predict(x: torch.Tensor) -> torch.Tensor:  # one batch of the whole dataset, in order
        return x + shift

    result = evaluate_dataset(predict, dataset, batch_size=len(dataset), n_examples=0, progress=False)
    expected = _nrmse_definition(pred.numpy(), target.numpy())
    np.testing.assert_allclose(result.per_sample["nrmse"], expected, rtol=1e-12)
    summary = result.summary()
    assert summary["nrmse_mean"] == pytest.approx(float(expected.mean()), rel=1e-12)
    assert summary["nrmse_median"] == pytest.approx(float(np.median(expected)), rel=1e-12)
    assert summary["nrmse_max"] == pytest.approx(float(expected.max()), rel=1e-12)
    assert set(metrics.METRICS) <= {key.rsplit("_", 1)[0] for key in summary if key.endswith("_mean")}


def test_the_recorded_data_of_another_machine_ask_for_data_dir(tmp_path):
    """a checkpoint trained elsewhere names a folder that is not here: the error says data_dir=, not 'generate'"""
    from surrogates.evaluation.dataset import data_source
    from surrogates.schema import DataSchema

    elsewhere = DataSchema(pde="darcy", source="/elsewhere/datasets/darcy_64")
    with pytest.raises(FileNotFoundError, match=r"/elsewhere/datasets/darcy_64, are not here; pass data_dir="):
        data_source(None, elsewhere)
    assert data_source(tmp_path, elsewhere) == str(tmp_path)  # given: used as it is
    assert data_source(None, DataSchema(pde="darcy", source=str(tmp_path))) == str(tmp_path)
    with pytest.raises(ValueError, match="records no data folder"):
        data_source(None, DataSchema(pde="darcy", source=""))


def test_evaluation_progress_off_a_terminal_is_whole_lines_not_carriage_returns(capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    pred, target = _fields(seed=1)
    dataset = [{"x": target[i], "y": target[i]} for i in range(len(target))]
    evaluate_dataset(lambda x: x, dataset, batch_size=1, n_examples=0, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert not any("\r" in line for line in lines)
    assert lines[0].startswith("evaluating:   0%") and f"{len(dataset)}/{len(dataset)}" in lines[-1], lines
