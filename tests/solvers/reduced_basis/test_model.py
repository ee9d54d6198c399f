"""Reduced model: online cost independent of N_h, save/load round trip, clear errors on bad files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from surrogates.solvers.reduced_basis import ReducedModel, ReducedModelFileError, is_reduced_model_file
from surrogates.solvers.reduced_basis.model import FORMAT


@pytest.fixture(scope="module")
def model_file(bump, tmp_path_factory):
    _, _, reductor, _ = bump
    model = reductor.reduce({"pde": "gaussian_bump", "note": np.arange(3)})
    return model, model.save(tmp_path_factory.mktemp("rb") / "bump.rb.h5")


def test_save_load_round_trip_gives_identical_answers(model_file):
    model, path = model_file
    assert is_reduced_model_file(path)
    loaded = ReducedModel.load(path)
    mus = model.parameter_space.sample_uniform(6, np.random.default_rng(0))
    a, b = model.solve(mus), loaded.solve(mus)
    np.testing.assert_array_equal(a.coefficients, b.coefficients)
    np.testing.assert_array_equal(a.bound, b.bound)
    np.testing.assert_array_equal(model.fields(a.coefficients), loaded.fields(b.coefficients))
    assert loaded.metadata["note"] == [0, 1, 2]
    assert loaded.parameter_space == model.parameter_space
    assert loaded.fields(b.coefficients).shape == (6, 17, 17)


def test_online_solve_never_touches_full_dimensional_data(model_file):
    model, _ = model_file
    mus = model.parameter_space.sample_uniform(3, np.random.default_rng(1))
    expected = model.solve(mus)
    blind = model.truncated(model.size)
    blind.basis = np.full_like(blind.basis, np.nan)  # only reconstruct() may use V
    got = blind.solve(mus)
    np.testing.assert_array_equal(got.coefficients, expected.coefficients)
    np.testing.assert_array_equal(got.bound, expected.bound)
    M, Mf = model.eim_sizes
    # the online data: EIM (M x M), reduced matrices (M N^2), estimator (K x (Mf + M N)), entry weights
    online = (blind.reduced_operator.size + blind.residual_R.size + blind.operator_entries.weights.size)
    assert online < 2 * (M * model.size**2 + (Mf + M * model.size) ** 2 + 8 * M * M)


def test_truncated_model_is_the_model_of_the_sub_basis(model_file):
    model, _ = model_file
    small = model.truncated(3)
    assert small.size == 3 and small.basis.shape[1] == 3
    mus = model.parameter_space.sample_uniform(4, np.random.default_rng(2))
    assert np.all(small.solve(mus).bound >= model.solve(mus).bound * 0.999)
    with pytest.raises(ValueError, match="size"):
        model.truncated(model.size + 1)


def test_parameters_outside_the_domain_are_refused(model_file):
    model, _ = model_file
    with pytest.raises(ValueError, match="width .* outside the domain"):
        model.solve(np.array([0.5, 0.5, 0.9]))
    with pytest.raises(ValueError, match="shape"):
        model.solve(np.array([0.5, 0.5]))


def test_missing_truncated_and_foreign_files_are_reported(model_file, tmp_path):
    _, path = model_file
    with pytest.raises(ReducedModelFileError, match="does not exist"):
        ReducedModel.load(tmp_path / "nope.rb.h5")
    truncated = tmp_path / "truncated.rb.h5"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ReducedModelFileError, match="truncated or corrupt"):
        ReducedModel.load(truncated)
    assert not is_reduced_model_file(truncated)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ReducedModelFileError, match="not a reduced basis model"):
        ReducedModel.load(foreign)
    text = tmp_path / "notes.rb.h5"
    text.write_text("hello")
    with pytest.raises(ReducedModelFileError, match="HDF5"):
        ReducedModel.load(text)


def _copy_and_edit(path, tmp_path, edit):
    target = tmp_path / "edited.rb.h5"
    target.write_bytes(path.read_bytes())
    with h5py.File(target, "r+") as f:
        edit(f)
    return target


def test_wrong_version_missing_datasets_and_inconsistent_shapes_are_reported(model_file, tmp_path):
    _, path = model_file

    def version(f):
        f.attrs["format_version"] = "2.0"

    with pytest.raises(ReducedModelFileError, match="format_version 2.0"):
        ReducedModel.load(_copy_and_edit(path, tmp_path, version))

    def drop(f):
        del f["estimator/R"]

    with pytest.raises(ReducedModelFileError, match="missing dataset 'estimator/R'"):
        ReducedModel.load(_copy_and_edit(path, tmp_path, drop))

    def reshape(f):
        data = f["rhs/reduced"][...]
        del f["rhs/reduced"]
        f["rhs/reduced"] = data[:, :-1]

    with pytest.raises(ReducedModelFileError, match="inconsistent"):
        ReducedModel.load(_copy_and_edit(path, tmp_path, reshape))

    def nan(f):
        f["operator/reduced"][0, 0, 0] = np.nan

    with pytest.raises(ReducedModelFileError, match="NaN"):
        ReducedModel.load(_copy_and_edit(path, tmp_path, nan))

    def foreign_problem(f):
        f.attrs["problem_target"] = "os.path.join"

    with pytest.raises(ReducedModelFileError, match="cannot re-create the problem"):
        ReducedModel.load(_copy_and_edit(path, tmp_path, foreign_problem))
    assert FORMAT == "surrogates.reduced_basis"


def test_a_problem_whose_grid_differs_from_the_stored_basis_is_refused(model_file, tmp_path):
    """The problem re-created from the file must have the grid its basis lives on (17 x 17 nodes, 15^2 unknowns)."""
    model, path = model_file
    assert model.problem.dim == model.basis.shape[0] == 15**2

    def finer(f):
        config = json.loads(f.attrs["problem_config"])
        config["resolution"] = 33
        f.attrs["problem_config"] = json.dumps(config)

    with pytest.raises(ReducedModelFileError, match="grid"):
        ReducedModel.load(_copy_and_edit(path, tmp_path, finer))


def test_compressed_estimator_is_saved_and_recomputed_when_absent(model_file, tmp_path):
    model, _ = model_file
    mus = model.parameter_space.sample_uniform(5, np.random.default_rng(4))
    fresh = model.truncated(model.size)
    assert fresh.compressed is None
    expected = fresh.solve(mus, estimator="compressed")  # computed on first use
    assert fresh.compressed is not None and fresh.metadata["compression"]["rank"] == fresh.compressed.rank
    path = fresh.save(tmp_path / "compressed.rb.h5")
    with h5py.File(path, "r") as f:
        assert f["estimator/compressed_P"].shape == fresh.compressed.P.shape
    loaded = ReducedModel.load(path)
    np.testing.assert_array_equal(loaded.compressed.P, fresh.compressed.P)
    np.testing.assert_array_equal(loaded.solve(mus, estimator="compressed").bound, expected.bound)
    # a file without the compressed data (format 1.0) still answers compressed queries
    with h5py.File(path, "a") as f:
        del f["estimator/compressed_P"], f["estimator/compressed_scale"]
        f.attrs["format_version"] = "1.0"
    old = ReducedModel.load(path)
    assert old.compressed is None
    np.testing.assert_allclose(old.solve(mus, estimator="compressed").bound, expected.bound, rtol=1e-12)
    # a sub-model is compressed anew, for its own components
    small = loaded.truncated(3)
    assert small.compressed is None and small.solve(mus, estimator="compressed").bound.shape == (5,)
    assert small.compressed.P.shape[1] == small.residual_R.shape[1]


def test_reduced_solve_gives_the_coefficients_of_solve(model_file):
    model, _ = model_file
    mus = model.parameter_space.sample_uniform(3, np.random.default_rng(5))
    c, theta_a, theta_f = model.reduced_solve(mus)
    np.testing.assert_array_equal(c, model.solve(mus).coefficients)
    assert theta_a.shape == (3, model.eim_sizes[0]) and theta_f.shape == (3, model.eim_sizes[1])
