"""Dataset evaluation reports every metric of the table, nRMSE among them, as its definition says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogates import metrics
from surrogates.evaluation.dataset import evaluate_dataset


def _nrmse_definition(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``RMSE / RMS(target)`` per sample over all channels and points (PDEBench's nRMSE)."""
    axes = tuple(range(1, pred.ndim))
    return np.sqrt(((pred - target) ** 2).mean(axis=axes)) / np.sqrt((target**2).mean(axis=axes))


def _fields(seed: int = 0, shape=(5, 2, 8, 6)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(shape, generator=generator, dtype=torch.float64)
    pred = target + 0.3 * torch.randn(shape, generator=generator, dtype=torch.float64)
    return pred, target


def test_nrmse_is_rmse_over_the_rms_of_the_target():
    pred, target = _fields()
    expected = _nrmse_definition(pred.numpy(), target.numpy())
    # float64 throughout: the two formulas differ by round-off only
    np.testing.assert_allclose(metrics.nrmse(pred, target).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.compute_metric("nrmse", pred, target).numpy(), expected, rtol=1e-12)


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
