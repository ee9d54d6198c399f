"""Shared fixtures: tiny datasets made by the project's own generators (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_SIZES = {"train": 48, "val": 16, "test": 16}

THREADS_ENV = "SURROGATES_TEST_THREADS"


def pytest_addoption(parser):
    parser.addoption(
        "--threads",
        type=int,
        default=None,
        help=f"limit BLAS (threadpoolctl) and torch intra-op threads to N for the whole session "
        f"(default: ${THREADS_ENV}, else the libraries' own defaults); "
        "a different thread count changes the blocking, hence the summation order and the rounding",
    )


def pytest_configure(config):
    """``--threads N``: one summation order for the session, set before any test runs.

    Only the thread counts change: BLAS through threadpoolctl (every BLAS/OpenMP library loaded by
    numpy, scipy and torch, which are imported first so that their libraries are covered) and torch's
    intra-op pool. ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` and the like are left as the machine
    sets them: some machines set them on purpose to avoid wrong results.
    """
    threads = config.getoption("--threads")
    if threads is None and os.environ.get(THREADS_ENV):
        threads = int(os.environ[THREADS_ENV])
    if threads is None:
        return
    if threads < 1:
        raise pytest.UsageError(f"--threads / {THREADS_ENV} must be >= 1, got {threads}")
    import numpy  # noqa: F401  (load each library's BLAS before limiting it)
    import scipy.linalg  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    # kept on the config for the whole session (threadpool_limits restores the old limits only on exit)
    config._surrogates_thread_limits = threadpool_limits(limits=threads)
    torch.set_num_threads(threads)
    config._surrogates_threads = threads


def pytest_report_header(config):
    threads = getattr(config, "_surrogates_threads", None)
    if threads is None:
        return None
    import torch
    from threadpoolctl import threadpool_info

    pools = ", ".join(f"{p['prefix']}={p['num_threads']}" for p in threadpool_info())
    return f"threads limited to {threads}: torch={torch.get_num_threads()}, {pools}"


@pytest.fixture(scope="session")
def darcy_dir(tmp_path_factory) -> Path:
    """A 16x16 Darcy dataset with train/val/test splits."""
    from surrogates.data.generation import generate_dataset
    from surrogates.pdes.darcy import Darcy

    root = tmp_path_factory.mktemp("data") / "darcy_16"
    generate_dataset(Darcy(resolution=16), root, TINY_SIZES, seed=0, chunk_size=16, progress=False)
    return root


@pytest.fixture(scope="session")
def burgers_dir(tmp_path_factory) -> Path:
    """A 1D Burgers dataset on 64 points with 3 snapshots."""
    from surrogates.data.generation import generate_dataset
    from surrogates.pdes.burgers import Burgers

    root = tmp_path_factory.mktemp("data") / "burgers_64"
    pde = Burgers(resolution=64, solver_resolution=256, n_snapshots=3, dt=1e-3)
    generate_dataset(pde, root, TINY_SIZES, seed=0, chunk_size=16, progress=False)
    return root


def train_tiny(data_dir: Path, out_dir: Path, max_epochs: int = 2, dim: int = 2, **data_kwargs):
    """Train a small FNO with Lightning (no Hydra); returns (task, datamodule, best checkpoint path)."""
    import functools

    import lightning as L
    import torch

    from surrogates.data.datamodule import FieldDataModule
    from surrogates.models.fno import FNO
    from surrogates.tasks.operator_regression import OperatorRegression

    L.seed_everything(0)
    inputs, targets = data_kwargs.pop("inputs", ["a"]), data_kwargs.pop("targets", ["u"])
    datamodule = FieldDataModule(data_dir, inputs=inputs, targets=targets, batch_size=8, **data_kwargs)
    net = FNO(in_channels=len(inputs), out_channels=len(targets), dim=dim, modes=4, width=12, projection_channels=16)
    task = OperatorRegression(net, optimizer=functools.partial(torch.optim.Adam, lr=5e-3))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=out_dir, filename="best", monitor="val/rel_l2")
    trainer = L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", logger=False, callbacks=[checkpoint],
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(task, datamodule=datamodule)
    return task, datamodule, Path(checkpoint.best_model_path)


@pytest.fixture(scope="session")
def darcy_checkpoint(darcy_dir, tmp_path_factory) -> Path:
    """A checkpoint of a tiny FNO trained for two epochs on the Darcy fixture."""
    return train_tiny(darcy_dir, tmp_path_factory.mktemp("ckpt"))[2]


@pytest.fixture(scope="session")
def ks_dir(tmp_path_factory) -> Path:
    """Kuramoto-Sivashinsky trajectories: 64 points, 12 states, per-trajectory dt and dx (16/4/4 trajectories)."""
    from surrogates.data.generation import generate_dataset
    from surrogates.pdes.ks import KuramotoSivashinsky

    root = tmp_path_factory.mktemp("data") / "ks_64"
    pde = KuramotoSivashinsky(resolution=64, solver_resolution=128, length=32.0, n_steps=12, substeps=4, transient_time=20.0)
    generate_dataset(pde, root, {"train": 16, "val": 4, "test": 4}, seed=0, chunk_size=16, progress=False)
    return root


@pytest.fixture(scope="session")
def diffusion_sorption_dir(tmp_path_factory) -> Path:
    """Diffusion-sorption trajectories: 16 cells, 11 times over [0, 500] (12/4/4 samples)."""
    from surrogates.data.generation import generate_dataset
    from surrogates.pdes.diffusion_sorption import DiffusionSorption

    root = tmp_path_factory.mktemp("data") / "diffusion_sorption_16"
    pde = DiffusionSorption(resolution=16, refinement=2, n_snapshots=11, rtol=1e-5, atol=1e-7)
    generate_dataset(pde, root, {"train": 12, "val": 4, "test": 4}, seed=0, chunk_size=4, progress=False)
    return root


@pytest.fixture(scope="session")
def navier_stokes_dir(tmp_path_factory) -> Path:
    """Vorticity trajectories: 16 x 16 points, 6 times over [0, 2] (12/4/4 samples)."""
    from surrogates.data.generation import generate_dataset
    from surrogates.pdes.navier_stokes import NavierStokes2D

    root = tmp_path_factory.mktemp("data") / "navier_stokes_16"
    pde = NavierStokes2D(resolution=16, refinement=2, final_time=2.0, n_snapshots=6, dt=0.05)
    generate_dataset(pde, root, {"train": 12, "val": 4, "test": 4}, seed=0, chunk_size=4, progress=False)
    return root
