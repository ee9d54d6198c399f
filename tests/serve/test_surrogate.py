import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import Surrogate
from surrogates.data.xarray_view import open_split
from surrogates.serve.surrogate import CheckpointError
from surrogates.tasks.operator_regression import OperatorRegression


@pytest.fixture(scope="module")
def surrogate(darcy_checkpoint):
    return Surrogate.load(darcy_checkpoint)


@pytest.fixture(scope="module")
def test_inputs(darcy_dir):
    ds = open_split(darcy_dir, "test")
    return ds["a"].values.astype(np.float32)


def test_predict_matches_the_lightning_module(surrogate, darcy_checkpoint, test_inputs):
    """Training, evaluation and serving call one module (the task's ``model``, a NormalizedOperator): on the
    same batch the served prediction equals the task's forward bit for bit."""
    checkpoint = torch.load(darcy_checkpoint, map_location="cpu", weights_only=True)
    from surrogates.checkpoint import build_model
    from surrogates.models.normalized import NormalizedOperator

    task = OperatorRegression(build_model(checkpoint["surrogates"]["model"]), optimizer=torch.optim.Adam)
    task.load_state_dict(checkpoint["state_dict"])  # the checkpoint's state is the task's, statistics included
    task.eval()
    assert type(surrogate.predictor) is NormalizedOperator
    with torch.no_grad():
        expected = task(torch.from_numpy(test_inputs)[:, None])[:, 0].numpy()
    np.testing.assert_array_equal(surrogate.predict(test_inputs, batch_size=len(test_inputs)), expected)


def test_numpy_layouts(surrogate, test_inputs):
    batch = surrogate.predict(test_inputs)
    assert batch.shape == test_inputs.shape
    single = surrogate.predict(test_inputs[0])
    assert single.shape == test_inputs[0].shape
    np.testing.assert_allclose(single, batch[0], rtol=1e-5, atol=1e-7)
    with_channel = surrogate.predict(test_inputs[:, None])
    assert with_channel.shape == (len(test_inputs), 1, *test_inputs.shape[1:])


def test_xarray_in_xarray_out(surrogate, darcy_dir, test_inputs):
    ds = open_split(darcy_dir, "test")
    out = surrogate.predict(ds)
    assert isinstance(out, xr.Dataset)
    assert out["u"].dims == ("sample", "x", "y")
    np.testing.assert_array_equal(out["x"].values, ds["x"].values)
    np.testing.assert_allclose(out["u"].values, surrogate.predict(test_inputs), rtol=1e-6)
    with pytest.raises(ValueError, match=r"lacks input variable\(s\) \['a'\]; it has \['u'\]"):
        surrogate.predict(ds.drop_vars("a"))


def test_other_resolution_is_accepted(surrogate):
    # An FNO is discretization invariant: a finer grid is a valid input.
    out = surrogate.predict(np.full((2, 32, 32), 3.0, dtype=np.float32))
    assert out.shape == (2, 32, 32) and np.isfinite(out).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 3, 16, 16), dtype=np.float32), "does not match the model"),
        (np.zeros((2, 2, 3, 16, 16), dtype=np.float32), "does not match the model"),
        (np.zeros(16, dtype=np.float32), "does not match the model"),
    ],
)
def test_wrong_shape_is_rejected(surrogate, bad, message):
    with pytest.raises(ValueError, match=message):
        surrogate.predict(bad)


def test_nan_input_is_rejected(surrogate, test_inputs):
    bad = test_inputs.copy()
    bad[1, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"input 'a' contains NaN or infinite values \(samples \[1\];"):
        surrogate.predict(bad)


def test_unsupported_type_is_rejected(surrogate):
    with pytest.raises(TypeError, match="numpy array or an xarray.Dataset"):
        surrogate.predict([[1.0, 2.0]])


def test_corrupt_and_foreign_checkpoints_are_reported(darcy_checkpoint, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(darcy_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        Surrogate.load(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a surrogates checkpoint"):
        Surrogate.load(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        Surrogate.load(tmp_path / "missing.ckpt")
