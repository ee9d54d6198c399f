import numpy as np
import pytest
import torch

from surrogates.data.dataset import FieldDataset
from surrogates.data.normalization import Normalizer, channel_statistics
from surrogates.data.shards import split_files


def test_encode_decode_round_trip_and_broadcast():
    normalizer = Normalizer.from_stats([1.0, -2.0, 100.0], [2.0, 0.5, 0.0])
    x = torch.randn(4, 3, 5, 7, dtype=torch.float32) * 3 + 1
    z = normalizer.encode(x)
    torch.testing.assert_close(z[:, 0], (x[:, 0] - 1.0) / (2.0 + normalizer.eps))
    assert torch.isfinite(z).all()  # constant channel (std 0) does not divide by zero
    torch.testing.assert_close(normalizer.decode(z), x, rtol=1e-5, atol=1e-4)
    x1 = torch.randn(2, 3, 9)
    # the constant channel (mean 100, std 0 + eps 1e-6) rounds x - 100, the division and the product in
    # float32: up to ~3 u32 100 = 1.8e-5 absolute, whatever x is (as for x above)
    torch.testing.assert_close(normalizer.decode(normalizer.encode(x1)), x1, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(B, 3, \*spatial\)"):
        normalizer.encode(torch.zeros(2, 4, 5))


def test_state_dict_round_trip():
    trained = Normalizer.from_stats(np.array([0.5, 3.0]), np.array([1.5, 0.25]))
    empty = Normalizer(2)
    assert torch.equal(empty.mean, torch.zeros(2)) and torch.equal(empty.std, torch.ones(2))
    empty.load_state_dict(trained.state_dict())
    torch.testing.assert_close(empty.mean, trained.mean)
    torch.testing.assert_close(empty.std, trained.std)
    assert set(trained.state_dict()) == {"mean", "std"}


def test_channel_statistics_match_numpy(burgers_like):
    import xarray as xr

    ds = FieldDataset(split_files(burgers_like, "train"), ["u", "nu"], ["u"], input_time=0, target_time=-1)
    mean, std = channel_statistics(ds, "x", batch_size=3)  # batches do not divide the 8 samples
    with xr.open_dataset(split_files(burgers_like, "train")[0], engine="h5netcdf") as raw:
        u0 = raw["u"].values[:, 0].astype(np.float64)
        nu = raw["nu"].values.astype(np.float64)
    np.testing.assert_allclose(mean, [u0.mean(), nu.mean()], rtol=1e-12)
    np.testing.assert_allclose(std, [u0.std(), nu.std()], rtol=1e-10)
    assert mean.dtype == np.float64 and mean.shape == (2,)


def test_statistics_are_accurate_for_a_large_mean():
    class Shifted(torch.utils.data.Dataset):
        def __init__(self):
            self.data = torch.from_numpy(np.random.default_rng(0).normal(1e4, 1e-2, (9, 1, 50)).astype(np.float32))

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            return {"x": self.data[i]}

    data = Shifted()
    mean, std = channel_statistics(data, "x", batch_size=2)
    reference = data.data.numpy().astype(np.float64)
    np.testing.assert_allclose(std, [reference.std()], rtol=1e-8)
