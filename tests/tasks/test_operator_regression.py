import functools

import lightning as L
import pytest
import torch

from surrogates.data.datamodule import FieldDataModule
from surrogates.models.fno import FNO
from surrogates.checkpoint import FORMAT_VERSION, METADATA_KEY
from surrogates.tasks.operator_regression import OperatorRegression
from tests.conftest import train_tiny


def _val_error(task, datamodule) -> float:
    task.eval()
    errors = []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            errors.append(task._errors(batch)["rel_l2"])
    return float(torch.cat(errors).mean())  # per-sample errors: the mean over the split


def test_training_reduces_error_and_uses_training_statistics(darcy_dir, tmp_path):
    # Error of the untrained network with the same normalization, for reference.
    untrained_task, datamodule, _ = train_tiny(darcy_dir, tmp_path / "zero", max_epochs=0)
    initial = _val_error(untrained_task, datamodule)
    task, datamodule, best = train_tiny(darcy_dir, tmp_path / "trained", max_epochs=25)
    final = _val_error(task, datamodule)
    assert final < 0.35 * initial, (initial, final)
    assert final < 0.25
    torch.testing.assert_close(task.model.input_normalizer.mean, datamodule.input_normalizer.mean)
    torch.testing.assert_close(task.model.target_normalizer.std, datamodule.target_normalizer.std)


def test_checkpoint_is_self_describing_and_safe_to_load(darcy_checkpoint):
    checkpoint = torch.load(darcy_checkpoint, map_location="cpu", weights_only=True)
    meta = checkpoint[METADATA_KEY]
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == "operator"
    assert meta["model"]["name"] == "fno" and meta["task"] == "operator_regression"
    assert meta["model"]["kwargs"]["width"] == 12
    assert meta["data_schema"]["inputs"] == ["a"] and meta["data_schema"]["targets"] == ["u"]
    assert "normalization" not in meta  # format 3: the statistics are the saved model's buffers, stored once
    state = checkpoint["state_dict"]
    assert state["model.input_normalizer.mean"].shape == (1,) and "input_normalizer.mean" not in state
    assert meta["package_version"]
    assert meta["training"]["metrics"]["val/rel_l2"] > 0  # the metrics at save time travel with the weights


def test_channel_mismatch_between_model_and_data_is_reported(darcy_dir):
    datamodule = FieldDataModule(darcy_dir, inputs=["a"], targets=["u"], batch_size=8)
    net = FNO(in_channels=2, out_channels=1, dim=2, modes=4, width=8)
    task = OperatorRegression(net, optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="maps 2 -> 1 channels"):
        trainer.fit(task, datamodule=datamodule)


def test_unknown_loss_is_rejected():
    net = FNO(in_channels=1, out_channels=1, dim=1, modes=4, width=8)
    with pytest.raises(ValueError, match="unknown loss"):
        OperatorRegression(net, optimizer=functools.partial(torch.optim.Adam), loss="l3")
