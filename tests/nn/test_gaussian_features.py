"""Gaussian feature embedding: shapes, the expanded quadratic form, SPD covariances during training."""

from __future__ import annotations

import pytest
import torch

from surrogates.nn.gaussian_features import GaussianFeatures


def _randomize(layer: GaussianFeatures, seed: int = 0) -> GaussianFeatures:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.precision_offdiag.copy_(torch.randn(layer.precision_offdiag.shape, generator=generator))
        layer.log_precision_diag.add_(0.3 * torch.randn(layer.log_precision_diag.shape, generator=generator))
    return layer


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_shapes_and_leading_dimensions(dim):
    layer = GaussianFeatures(dim, n_gaussians=7, features=3)
    assert layer(torch.rand(11, dim)).shape == (11, 3)
    assert layer(torch.rand(2, 5, dim)).shape == (2, 5, 3)
    assert layer.weights(torch.rand(4, dim)).shape == (4, 7)
    assert layer.covariance().shape == (7, dim, dim)
    with pytest.raises(ValueError, match="points of shape"):
        layer(torch.rand(4, dim + 1))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_expanded_quadratic_form_matches_the_direct_one(dim):
    layer = _randomize(GaussianFeatures(dim, 20, 2, bounds=[[0.0, 2.0]] * dim).double())
    x = torch.rand(30, dim, dtype=torch.float64) * 2
    diff = x[:, None, :] - layer.means
    direct = torch.einsum("pnd,nde,pne->pn", diff, layer.precision(), diff)
    torch.testing.assert_close(layer.quadratic_form(x), direct, rtol=1e-10, atol=1e-9)
    # Sigma is the inverse of the precision
    eye = torch.eye(dim, dtype=torch.float64).expand(20, dim, dim)
    torch.testing.assert_close(layer.covariance() @ layer.precision(), eye, rtol=1e-9, atol=1e-9)


def test_initial_gaussians_are_isotropic_with_sigma_init_and_centers_in_the_box():
    layer = GaussianFeatures(2, 50, 4, bounds=[[0.0, 1.0], [-2.0, 2.0]], sigma_init=0.1, covariance="diagonal")
    low, high = torch.tensor([0.0, -2.0]), torch.tensor([1.0, 2.0])
    assert torch.all((layer.means >= low) & (layer.means <= high))
    std = layer.covariance().diagonal(dim1=-2, dim2=-1).sqrt()
    torch.testing.assert_close(std, torch.tensor([0.1, 0.4]).expand(50, 2))
    assert not layer.precision_offdiag.requires_grad  # diagonal: axis-aligned ellipses only


def test_normalized_features_form_a_partition_of_unity():
    layer = GaussianFeatures(2, 30, 1, sigma_init=0.2, normalize=True)
    with torch.no_grad():
        layer.features.fill_(1.0)
    torch.testing.assert_close(layer(torch.rand(10, 2) * 2 - 1), torch.ones(10, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim", [2, 3])
def test_covariances_stay_spd_through_training(dim):
    torch.manual_seed(0)
    layer = GaussianFeatures(dim, 25, 3, sigma_init=0.1)
    readout = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam([*layer.parameters(), *readout.parameters()], lr=0.2)  # large steps on purpose
    x = torch.rand(200, dim) * 2 - 1
    target = torch.sin(5 * x).prod(-1, keepdim=True)
    before = layer.precision_offdiag.detach().clone()
    for _ in range(60):
        optimizer.zero_grad()
        loss = (readout(layer(x)) - target).square().mean()
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, layer.precision_offdiag)  # the shapes did rotate
    covariance = layer.covariance().double()
    torch.testing.assert_close(covariance, covariance.transpose(-1, -2))
    assert torch.all(torch.linalg.eigvalsh(covariance) > 0)
    assert torch.isfinite(loss)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="covariance"):
        GaussianFeatures(2, 4, 2, covariance="spherical")
    with pytest.raises(ValueError, match="bounds"):
        GaussianFeatures(2, 4, 2, bounds=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="sigma_init"):
        GaussianFeatures(2, 4, 2, sigma_init=0.0)
