"""Power-limit models on sub-boxes, the exact eigenvalue clusters, and the HDF5 round trip."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy.linalg import eigh

from surrogates.pdes.thermal_block import ThermalBlock
from surrogates.solvers.reduced_basis import PowerLimitsEIM
from surrogates.solvers.reduced_basis.power_io import PowerLimitsFileError
from surrogates.solvers.reduced_basis.power_limits import cluster_multiplicities
from surrogates.solvers.reduced_basis.power_partition import PowerLimitPartition, box_edges, cover_cells

from .test_power_limits import EPS, SMALL, exact


@pytest.fixture(scope="module")
def tb():
    return ThermalBlock(resolution=10)


@pytest.fixture(scope="module")
def partition(tb):
    return PowerLimitsEIM(degree=3, splits=2, **SMALL).build_partition(tb)


def _corners_and_edges(edges: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Parameters with every component on an edge (inner or outer) or random between edges, ``(n, P)``."""
    P = edges.shape[0]
    on_edge = edges[np.arange(P), rng.integers(0, edges.shape[1], size=(n, P))]
    inside = edges[:, 0] + (edges[:, -1] - edges[:, 0]) * rng.random((n, P))
    return np.where(rng.random((n, P)) < 0.6, on_edge, inside)


def test_box_edges_have_equal_ratios_and_exact_ends():
    edges = box_edges(np.array([0.1, 0.0]), np.array([1.0, 2.0]), 3)
    assert edges[0, 0] == 0.1 and edges[0, -1] == 1.0 and edges[1, 0] == 0.0 and edges[1, -1] == 2.0
    np.testing.assert_allclose(edges[0, 1:] / edges[0, :-1], 10 ** (1 / 3), rtol=1e-14)  # geometric where lower > 0
    np.testing.assert_allclose(np.diff(edges[1]), 2 / 3, rtol=1e-14)  # uniform otherwise
    with pytest.raises(ValueError, match="splits"):
        box_edges(np.zeros(1), np.ones(1), 0)


def test_clusters_are_generalized_eigenvalues(tb):
    """c_u / r_u is an eigenvalue of (A(mu), X_r) with multiplicity >= m_u, for any reference r > 0 (FD and P1)."""
    for problem in (tb, ThermalBlock(resolution=8, discretization="p1")):
        eim = PowerLimitsEIM(degree=1, **SMALL)
        system, rows, groups = eim.prepare(problem, np.random.default_rng(0))
        m = cluster_multiplicities(problem, groups, len(rows))
        assert m.sum() > 0
        assembly = problem.operator_assembly
        for mu, r in ((np.array([0.2, 0.7, 0.45, 0.9]), np.array([0.3, 0.5, 0.2, 0.8])), (np.full(4, 0.5), np.ones(4))):
            c = rows @ system.operator.weights(system.operator_entries(mu[None]))[0]
            X_r = assembly.matrix(np.asarray(assembly.S @ r[groups]).ravel()).toarray()
            ev = eigh(problem.operator(mu).toarray(), X_r, eigvals_only=True)
            scale = np.abs(ev).max()
            for u in range(len(rows)):
                assert np.sum(np.abs(ev - c[u] / r[u]) <= 1e-10 * scale) >= m[u]


def test_bound_holds_on_every_sub_box(tb, partition):
    """Random parameters and parameters on sub-box edges and corners: |error| <= bound."""
    mus = _corners_and_edges(partition.edges, np.random.default_rng(3), 40)
    logdets, _ = exact(tb, mus)
    estimate = partition.log_det(mus)
    assert np.all(np.abs(estimate.value - logdets) <= estimate.bound)
    assert len(np.unique(partition.locate(mus))) > 4


def test_sub_boxes_narrow_the_bound(tb, partition):
    """With a quarter of the ratio in the exponent the same degree bounds far tighter than on the whole box."""
    whole = PowerLimitsEIM(degree=3, **SMALL).build(tb)
    mus = tb.parameter_space.sample_uniform(20, np.random.default_rng(4))
    assert np.all(partition.log_det(mus).bound < whole.log_det(mus).bound)


def test_selection_is_exact_at_box_boundaries(partition):
    """The chosen sub-box contains the parameter (closed boxes), also exactly on inner and outer edges."""
    mus = _corners_and_edges(partition.edges, np.random.default_rng(5), 200)
    boxes = partition.locate(mus)
    for mu, box in zip(mus, boxes):
        model = partition.models[box]
        assert np.all(model.lower <= mu) and np.all(mu <= model.upper)
    inner = partition.edges[:, 1]
    assert partition.models[partition.locate(inner[None])[0]].lower.tolist() == inner.tolist()  # ties go up
    assert partition.locate(partition.edges[:, :1].T)[0] == 0
    assert partition.locate(partition.edges[:, -1:].T)[0] == len(partition.models) - 1


def test_one_sub_box_is_the_single_model(tb):
    eim = PowerLimitsEIM(degree=3, **SMALL)
    single, part = eim.build(tb), eim.build_partition(tb)
    assert len(part.models) == 1
    mus = tb.parameter_space.sample_uniform(10, np.random.default_rng(6))
    a, b = single.log_det(mus), part.log_det(mus)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.bound, b.bound)
    np.testing.assert_array_equal(single.solve(mus)[0], part.solve(mus)[0])


def test_clusters_off_is_the_plain_method(tb):
    """clusters=False: value lambda . log det A(mu_j) and the N_h factor of the bound."""
    model = PowerLimitsEIM(degree=3, clusters=False, **SMALL).build(tb)
    assert model.scattered == tb.dim
    mus = tb.parameter_space.sample_uniform(6, np.random.default_rng(8))
    estimate = model.log_det(mus)
    lam = model.power_weights(mus)
    np.testing.assert_allclose(estimate.value, lam @ model.log_dets, rtol=1e-12)
    assert np.all(np.abs(estimate.value - exact(tb, mus)[0]) <= estimate.bound)


def test_save_load_round_trip(tb, partition, tmp_path):
    path = partition.save(tmp_path / "tb.logdet.h5")
    loaded = PowerLimitPartition.load(path)
    mus = _corners_and_edges(partition.edges, np.random.default_rng(9), 12)
    a, b = partition.log_det(mus), loaded.log_det(mus)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.bound, b.bound)
    np.testing.assert_array_equal(partition.solve(mus)[0], loaded.solve(mus)[0])
    np.testing.assert_array_equal(loaded.edges, partition.edges)
    assert loaded.info == partition.info and loaded.problem.config() == tb.config()


def test_load_refuses_bad_files(partition, tmp_path):
    with pytest.raises(PowerLimitsFileError, match="does not exist"):
        PowerLimitPartition.load(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(PowerLimitsFileError, match="HDF5"):
        PowerLimitPartition.load(tmp_path / "text.h5")
    path = partition.save(tmp_path / "m.logdet.h5")
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "something.else"
    with pytest.raises(PowerLimitsFileError, match="not a power-limit model"):
        PowerLimitPartition.load(path)
    for edit, match in (
        (lambda f: f.attrs.__setitem__("problem_target", "os.system"), "re-create the problem"),
        (lambda f: f["boxes/3/log_dets"].__setitem__(0, np.nan), "NaN"),
        (lambda f: f.__delitem__("boxes/5/powers"), "powers"),
        (lambda f: f.__delitem__("boxes/15"), "models for"),
        (lambda f: f.attrs.__setitem__("format_version", "2.0"), "not supported"),
    ):
        path = partition.save(tmp_path / "m.logdet.h5")
        with h5py.File(path, "a") as f:
            edit(f)
        with pytest.raises(PowerLimitsFileError, match=match):
            PowerLimitPartition.load(path)


# -- the homogeneous cover -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cover(tb):
    return PowerLimitsEIM(degree=3, splits=3, cover="homogeneous", **SMALL).build_partition(tb)


@pytest.mark.parametrize("P, s", [(2, 3), (3, 2), (4, 3)])
def test_cover_cells_cover_the_box(P, s):
    """Every v in [0, s]^P lies in the diagonal prism of some cube: spread(v - b) <= 1."""
    cells = cover_cells(np.full(P, float(s)), s)
    rng = np.random.default_rng(P)
    v = np.concatenate([s * rng.random((4000, P)), s * rng.integers(0, 2, size=(2**P * 4, P))])
    d = v[:, None, :] - cells[None]
    assert np.all((d.max(axis=2) - d.min(axis=2)).min(axis=1) <= 1 + 1e-12)
    assert len(cells) < s**P or P == 2  # fewer cubes than tensor sub-boxes (P = 2: 3 strips vs 9 squares)
    assert np.all(np.sum(cells, axis=1) % P == np.sum(cells[0]) % P) and np.all(cells.min(axis=1) == 0)


def test_cover_bound_holds_and_selection(tb, cover):
    """|error| <= bound at random, edge and corner parameters; sigma mu lies in its cube (scaled exactly)."""
    assert len(cover.models) == 43 and cover.homogeneous
    edges = box_edges(np.asarray(tb.parameter_space.lower), np.asarray(tb.parameter_space.upper), 3)
    mus = _corners_and_edges(edges, np.random.default_rng(11), 40)
    logdets, _ = exact(tb, mus)
    estimate = cover.log_det(mus)
    assert np.all(np.abs(estimate.value - logdets) <= estimate.bound)
    cells, sigma = cover._cover(mus)
    for mu, cell, factor in zip(mus, cells, sigma):
        model = cover.models[cell]
        scaled = factor * mu
        assert np.all(scaled >= model.lower * (1 - 1e-12)) and np.all(scaled <= model.upper * (1 + 1e-12))
    # log det A(sigma mu) = log det A(mu) + N_h log sigma: the shift is exact for the thermal block
    mu, factor = mus[0], sigma[0]
    shifted = exact(tb, [factor * mu])[0][0] - tb.dim * np.log(factor)
    assert abs(shifted - logdets[0]) <= 1e3 * EPS * abs(logdets[0])


def test_cover_needs_homogeneity_and_gives_no_solves(cover):
    from .test_power_limits import _IndefiniteBlock

    with pytest.raises(ValueError, match="homogeneous cover needs"):
        PowerLimitsEIM(degree=2, splits=2, cover="homogeneous", **SMALL).build_partition(_IndefiniteBlock(resolution=8))
    with pytest.raises(ValueError, match="log-determinants only"):
        cover.solve([[0.5, 0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="cover"):
        PowerLimitsEIM(cover="diagonal")


def test_cover_save_load_round_trip(tb, cover, tmp_path):
    loaded = PowerLimitPartition.load(cover.save(tmp_path / "cover.logdet.h5"))
    assert loaded.homogeneous and loaded.step == cover.step
    np.testing.assert_array_equal(loaded.cells, cover.cells)
    mus = tb.parameter_space.sample_uniform(10, np.random.default_rng(12))
    a, b = cover.log_det(mus), loaded.log_det(mus)
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(a.bound, b.bound)
