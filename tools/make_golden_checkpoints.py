"""Write the golden model files of ``tests/golden/`` (read back by ``tests/test_golden.py``).

For every kind of model file the package reads, one tiny file written by the package's real writers,
with a fixed input and the output its public reader gives (``<name>.npz`` next to the file), listed
in ``tests/golden/manifest.json``:

``v<FORMAT_VERSION>/`` (now ``v3/``: checkpoint format 3, ``.rb.h5`` format 1.2), written by this version:
    operator models (FNO 1D, 2D, 3D, MgNO, U-Net, TFNO with Tucker and CP weights, MG-TFNO, the hard-constraint
    MoE, its single-expert and soft-constraint variants), rollout models (PDE-Refiner with ``K = 2`` and a weight average, the MSE
    U-Net ``K = 0``) and pointwise models (PIG, PINN) are trained for two steps by their Lightning task on
    tiny data made by the package's generators, and saved with ``trainer.save_checkpoint`` (the task's
    ``on_save_checkpoint``); the reduced model is built by ``RBEIM`` on a 9 x 9 thermal block and saved
    with ``ReducedModel.save``; the learned preconditioner is trained for one epoch and saved with
    ``learned.save``; the DCDM network (additive, BPX start) is trained for two steps and saved with
    ``DCDMNet.save``. Settings: the tasks' and models' defaults (the hard-constraint ones from
    ``conf/experiment/diffusion_sorption_*.yaml``) with tiny widths, modes, bases and grids.
``v2/`` (format 2, statistics as metadata lists): written by the previous version with ``--only current``
    and kept, like every older folder (they are never rewritten).
``v1/`` (format 1, before the checkpoint module): an FNO, a PDE-Refiner and a PIG checkpoint with the
    old unversioned metadata, a learned preconditioner in its old ``{"init_kwargs", "state_dict",
    "metadata"}`` layout and a reduced model of ``.rb.h5`` format 1.1 (problem named by import path).
    The old writers are gone: their layout is built here explicitly (``git show ef95a2b:...``).

Expected outputs are computed by loading the written file through the public reader of its kind.
For each network the manifest also records ``fp32_error``: ``max|y32 - y64| / max|y64|`` between the
stored float32 output and a float64 evaluation of the same weights, the float32 round-off actually
incurred here, which the test compares with its a-priori round-off bound.

The committed files are what CI loads, so that files of every format keep loading: the script refuses
to overwrite an existing folder without ``--force``. Regenerate only on purpose (never to make a failing
golden test pass). When the format is bumped, write the new format's folder and keep the old ones::

    python tools/make_golden_checkpoints.py                        # both folders; refuses if they exist
    python tools/make_golden_checkpoints.py --only current         # after a bump: writes v3/, keeps v2/, v1/
    python tools/make_golden_checkpoints.py --only current --force # rewrite this version's folder
    python tools/make_golden_checkpoints.py --add tfno mg_tfno     # a model kind added later: its files only
    python tools/make_golden_checkpoints.py --recompute-outputs v2/hc_moe --reason "..."  # outputs only

The manifest keeps the entries of the folders not rewritten. Everything is seeded and runs on one
thread: regenerating on the same machine gives the same weights and outputs (the ``.rb.h5`` file
records its creation time, ``.npz`` archives their write time). About half a minute on one CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "golden"
MANIFEST = "manifest.json"
V1_PACKAGE_VERSION = "0.1.0"  # the package version that wrote format-1 files
LEGACY = "v1"  # folder of the format-1 files (built explicitly: their writers are gone)


def checkpoint_format() -> int:
    """The checkpoint format this package writes (``surrogates.checkpoint.FORMAT_VERSION``)."""
    from surrogates.checkpoint import FORMAT_VERSION

    return FORMAT_VERSION


def current_folder() -> str:
    """``v<FORMAT_VERSION>``: the folder of the files written by this version."""
    return f"v{checkpoint_format()}"


OPERATOR_TASK_V1 = "surrogates.tasks.operator_regression.OperatorRegression"
ROLLOUT_TASK_V1 = "surrogates.tasks.autoregressive.Autoregressive"
POINTWISE_TASK_V1 = "surrogates.tasks.physics_informed.PhysicsInformed"


# -- tiny data made by the package's generators --------------------------------------------------------
class Data:
    """Tiny datasets, generated on first use into a temporary folder."""

    def __init__(self, root: Path):
        self.root = root
        self._dirs: dict[str, Path] = {}

    def _make(self, name: str, pde: Any, sizes: dict[str, int]) -> Path:
        if name not in self._dirs:
            from surrogates.data.generation import generate_dataset

            path = self.root / name
            generate_dataset(pde, path, sizes, seed=0, chunk_size=16, progress=False)
            self._dirs[name] = path
        return self._dirs[name]

    def darcy(self) -> Path:
        from surrogates.pdes.darcy import Darcy

        return self._make("darcy_16", Darcy(resolution=16), {"train": 16, "val": 4, "test": 4})

    def burgers(self) -> Path:
        from surrogates.pdes.burgers import Burgers

        pde = Burgers(resolution=64, solver_resolution=256, n_snapshots=3, dt=1e-3)
        return self._make("burgers_64", pde, {"train": 16, "val": 4, "test": 4})

    def navier_stokes(self) -> Path:
        from surrogates.pdes.navier_stokes import NavierStokes2D

        pde = NavierStokes2D(resolution=8, refinement=2, final_time=1.0, n_snapshots=4, dt=0.05)
        return self._make("navier_stokes_8", pde, {"train": 8, "val": 2, "test": 2})

    def ks(self) -> Path:
        from surrogates.pdes.ks import KuramotoSivashinsky

        pde = KuramotoSivashinsky(resolution=32, solver_resolution=64, length=16.0, n_steps=6, substeps=4,
                                  transient_time=10.0)
        return self._make("ks_32", pde, {"train": 8, "val": 2, "test": 2})

    def diffusion_sorption(self) -> Path:
        from surrogates.pdes.diffusion_sorption import DiffusionSorption

        pde = DiffusionSorption(resolution=16, refinement=2, n_snapshots=11, rtol=1e-5, atol=1e-7)
        return self._make("diffusion_sorption_16", pde, {"train": 8, "val": 2, "test": 2})


# -- training with the package's Lightning tasks ---------------------------------------------------------
def _trainer(root: Path, max_steps: int = 2):
    import lightning as L

    return L.Trainer(
        max_steps=max_steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1,
        deterministic=True, default_root_dir=root,
    )


def _fit_and_save(task, datamodule, path: Path, work: Path, max_steps: int = 2) -> None:
    """``trainer.fit`` for ``max_steps`` steps, then ``trainer.save_checkpoint(path)`` (the task's ``on_save_checkpoint``)."""
    trainer = _trainer(work, max_steps)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        trainer.fit(task, datamodule=datamodule)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path, weights_only=False)  # as ModelCheckpoint writes it: optimizer states and all


def _adam(lr: float = 3e-3):
    return functools.partial(torch.optim.Adam, lr=lr)


def _train_operator(net, data_dir: Path, path: Path, work: Path, inputs, targets, space_time: bool = False,
                    **data_kwargs):
    from surrogates.data.datamodule import FieldDataModule
    from surrogates.data.space_time import SpaceTimeDataModule
    from surrogates.tasks.operator_regression import OperatorRegression

    module = SpaceTimeDataModule if space_time else FieldDataModule
    datamodule = module(data_dir, inputs=list(inputs), targets=list(targets), batch_size=8, **data_kwargs)
    _fit_and_save(OperatorRegression(net, optimizer=_adam()), datamodule, path, work)
    return datamodule


def _operator_input(datamodule, n: int = 2) -> np.ndarray:
    """The first ``n`` inputs of the test split, ``(n, C_in, *spatial)`` float32, physical units."""
    datamodule.setup("test")
    loader = datamodule.test_dataloader()
    return next(iter(loader))["x"][:n].numpy().astype(np.float32)


# -- float64 evaluations (the round-off actually incurred by the float32 output) ------------------------
@contextlib.contextmanager
def _float32_noise() -> Iterator[None]:
    """``torch.randn`` draws float32 numbers and casts them: a float64 model sees the float32 run's noise."""
    original = torch.randn

    def randn(*args, dtype=None, **kwargs):
        return original(*args, **kwargs, dtype=torch.float32).to(dtype or torch.float32)

    torch.randn = randn
    try:
        yield
    finally:
        torch.randn = original


def _relative_error(y32: np.ndarray, y64: np.ndarray) -> float:
    return float(np.max(np.abs(y32.astype(np.float64) - y64)) / np.max(np.abs(y64)))


def _converged_output(surrogate, x: np.ndarray) -> np.ndarray:
    """A hard-constraint surrogate's output for ``x`` with its solver run to round-off (tolerances 1e-15)."""
    from surrogates.checkpoint import build_model

    kwargs = {**surrogate.model.init_kwargs, "ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "max_iter": 500}
    converged = build_model({"name": "hc_moe", "kwargs": kwargs}, surrogate.model.state_dict()).eval()
    with torch.no_grad():
        return converged(torch.from_numpy(x)).numpy()


def _operator_float64(surrogate, x: np.ndarray) -> np.ndarray:
    predictor = copy.deepcopy(surrogate.predictor).double()  # network and normalizers
    with torch.no_grad():
        return predictor(torch.from_numpy(x).double()).numpy()


# -- the entries --------------------------------------------------------------------------------------------
class Golden:
    """Writes files and their inputs/outputs, and collects the manifest."""

    def __init__(self, out: Path, data: Data, work: Path):
        self.out, self.data, self.work = out, data, work
        self.current = current_folder()
        self.entries: list[dict[str, Any]] = []

    def _record(self, name: str, version: str, suffix: str, kind: str, format_version: Any, model: str, reader: str,
                produced_by: str, arrays: dict[str, np.ndarray], fp32_error: float | None = None) -> None:
        path = self.out / version / f"{name}{suffix}"
        data = self.out / version / f"{name}.npz"
        np.savez_compressed(data, **arrays)
        entry = {
            "name": name, "version": version, "file": path.relative_to(self.out).as_posix(),
            "data": data.relative_to(self.out).as_posix(), "kind": kind, "format_version": format_version,
            "model": model, "reader": reader, "produced_by": produced_by, "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        if fp32_error is not None:
            entry["fp32_error"] = fp32_error
        self.entries.append(entry)
        print(f"  {entry['file']:38s} {entry['bytes'] / 1024:7.1f} KiB  {kind:14s} {model}"
              + (f"  fp32 error {fp32_error:.1e}" if fp32_error is not None else ""))

    def work_dir(self, name: str) -> Path:
        path = self.work / "runs" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- operator kind ---------------------------------------------------------------------------------
    def operator(self, name: str, version: str, net_factory: Callable[[], Any], data: str, inputs, targets,
                 description: str, legacy: bool = False, **data_kwargs) -> None:
        import lightning as L

        from surrogates import Surrogate
        from surrogates.checkpoint import read_checkpoint

        L.seed_everything(0, verbose=False)
        net = net_factory()
        path = self.out / version / f"{name}.ckpt"
        datamodule = _train_operator(net, getattr(self.data, data)(), path, self.work_dir(name), inputs, targets,
                                     **data_kwargs)
        produced = f"{description}; OperatorRegression, lightning.Trainer(max_steps=2).fit, trainer.save_checkpoint"
        if legacy:
            _rewrite_as_v1(path, OPERATOR_TASK_V1)
            produced += "; metadata then rewritten in the format-1 layout (model by import path, 'version')"
        x = _operator_input(datamodule)
        surrogate = Surrogate.load(path)
        y = surrogate.predict(x)
        model = read_checkpoint(path).metadata.model.name
        self._record(name, version, ".ckpt", "operator", 1 if legacy else checkpoint_format(), model, "surrogates.Surrogate.load",
                     produced, {"x": x, "y": y}, _relative_error(y, _operator_float64(surrogate, x)))

    def hard_constraint(self, name: str, description: str, **model_kwargs) -> None:
        import lightning as L

        from surrogates import Surrogate
        from surrogates.data.space_time import SpaceTimeDataModule
        from surrogates.models.hc_moe import HardConstraintMoE
        from surrogates.tasks.hard_constraint import HardConstraintTask

        L.seed_everything(0, verbose=False)
        # conf/experiment/diffusion_sorption_*.yaml, made tiny: widths, modes, basis and points
        settings = {
            "pde": "diffusion_sorption", "pde_params": {"final_time": 500.0}, "n_basis": 6, "n_points": 60,
            "ic_mode": "residual", "w_init": 1.0, "width": 6, "modes": 3, "n_layers": 2, "projection_channels": 8,
            "grid": "closed", **model_kwargs,
        }
        net = HardConstraintMoE(in_channels=1, out_channels=1, **settings)
        datamodule = SpaceTimeDataModule(self.data.diffusion_sorption(), inputs=["u"], targets=["u"], batch_size=4)
        path = self.out / self.current / f"{name}.ckpt"
        _fit_and_save(HardConstraintTask(net, optimizer=_adam()), datamodule, path, self.work_dir(name))
        x = _operator_input(datamodule)
        surrogate = Surrogate.load(path)
        y = surrogate.predict(x)
        arrays = {"x": x, "y": y}
        if surrogate.model.constraint == "hard":
            # the same model with its solver run to round-off: the test separates the stopping error from round-off
            arrays["y_converged"] = _converged_output(surrogate, x)
        self._record(
            name, self.current, ".ckpt", "operator", checkpoint_format(), "hc_moe", "surrogates.Surrogate.load",
            f"{description}; diffusion-sorption 16 cells x 11 times; HardConstraintTask, "
            "lightning.Trainer(max_steps=2).fit, trainer.save_checkpoint",
            arrays, _relative_error(y, _operator_float64(surrogate, x)),
        )

    # -- rollout kind ----------------------------------------------------------------------------------
    def rollout(self, name: str, version: str, k: int, description: str, legacy: bool = False,
                ema_decay: float = 0.0) -> None:
        import lightning as L

        from surrogates.data.autoregressive import AutoregressiveDataModule
        from surrogates.models.pde_refiner import PDERefiner
        from surrogates.serve.rollout import RolloutSurrogate
        from surrogates.tasks.autoregressive import Autoregressive

        L.seed_everything(0, verbose=False)
        net = PDERefiner(1, 1, n_params=2, num_refinement_steps=k, hidden_channels=4, channel_multipliers=[1, 2],
                         norm_groups=2, cond_channels=8)
        datamodule = AutoregressiveDataModule(self.data.ks(), ["u"], ["dt", "dx"], batch_size=16)
        path = self.out / version / f"{name}.ckpt"
        task = Autoregressive(net, optimizer=_adam(), ema_decay=ema_decay)
        _fit_and_save(task, datamodule, path, self.work_dir(name))
        produced = (f"{description}; Kuramoto-Sivashinsky 32 points conditioned on dt, dx; Autoregressive"
                    f"{f'(ema_decay={ema_decay}: the reader predicts with the average)' if ema_decay else ''}, "
                    "lightning.Trainer(max_steps=2).fit, trainer.save_checkpoint")
        if legacy:
            _rewrite_as_v1(path, ROLLOUT_TASK_V1)
            produced += "; metadata then rewritten in the format-1 layout"
        import h5py

        test_file = sorted((self.data.ks()).glob("test*.h5"))[0]
        with h5py.File(test_file, "r") as f:
            u0 = np.asarray(f["u"][:2, 0], dtype=np.float32)
            dt, dx = np.asarray(f["dt"][:2], dtype=np.float32), np.asarray(f["dx"][:2], dtype=np.float32)
        steps, seed = 2, 0
        surrogate = RolloutSurrogate.load(path)
        y = surrogate.rollout(u0, steps, seed=seed, dt=dt, dx=dx)
        # the first refinement noise of this rollout: the test checks torch's CPU normal generator on its own
        noise = torch.randn((len(u0), 1, u0.shape[-1]), generator=torch.Generator().manual_seed(seed)).numpy()
        # float64 evaluation with the same (float32) noise
        predictor64 = copy.deepcopy(surrogate.predictor).double()  # network, normalizer, parameter scale
        with _float32_noise(), torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            params = torch.from_numpy(np.stack([dt, dx], axis=1)).double()
            out = predictor64.rollout(torch.from_numpy(u0).double()[:, None], steps, params, generator)
            y64 = out[:, :, 0].numpy()
        self._record(name, version, ".ckpt", "rollout", 1 if legacy else checkpoint_format(), "pde_refiner",
                     "surrogates.serve.rollout.RolloutSurrogate.load", produced,
                     {"u0": u0, "dt": dt, "dx": dx, "steps": np.int64(steps), "seed": np.int64(seed), "y": y,
                      "noise": noise},
                     _relative_error(y, y64))

    # -- pointwise kind --------------------------------------------------------------------------------
    def pointwise(self, name: str, version: str, net_factory: Callable[[], Any], description: str,
                  legacy: bool = False) -> None:
        import lightning as L

        from surrogates.data.collocation import CollocationDataModule
        from surrogates.pdes.physics import Helmholtz2D
        from surrogates.tasks.physics_informed import PhysicsInformed, load_solution, predict_on_points

        L.seed_everything(0, verbose=False)
        problem = Helmholtz2D()
        datamodule = CollocationDataModule(problem, inputs=list(problem.coordinates), n_collocation=64, n_boundary=8,
                                           steps_per_epoch=2, eval_resolution=11)
        task = PhysicsInformed(net_factory(), optimizer=_adam(0.02), weights={"residual": 1e-3}, problem=problem,
                               save_figure=False)
        path = self.out / version / f"{name}.ckpt"
        _fit_and_save(task, datamodule, path, self.work_dir(name))
        produced = (f"{description}; Helmholtz2D; PhysicsInformed (Adam), lightning.Trainer(max_steps=2).fit, "
                    "trainer.save_checkpoint")
        if legacy:
            _rewrite_as_v1(path, POINTWISE_TASK_V1)
            produced += "; metadata then rewritten in the format-1 layout (problem by import path)"
        points = (torch.rand(24, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1).numpy()
        net, loaded_problem = load_solution(path)
        if loaded_problem != problem:
            raise RuntimeError(f"{path}: the problem read back ({loaded_problem}) is not the one trained on")
        y = predict_on_points(net, torch.from_numpy(points)).numpy()
        y64 = predict_on_points(copy.deepcopy(net).double(), torch.from_numpy(points).double()).numpy()
        self._record(name, version, ".ckpt", "pointwise", 1 if legacy else checkpoint_format(), type(net).registered_name,
                     "surrogates.tasks.physics_informed.load_solution", produced,
                     {"points": points, "y": y}, _relative_error(y, y64))

    # -- reduced kind ----------------------------------------------------------------------------------
    def reduced(self, name: str, version: str) -> None:
        from surrogates.pdes.thermal_block import ThermalBlock
        from surrogates.solvers.reduced_basis import RBEIM, RBReductor, weak_greedy
        from surrogates.solvers.reduced_basis.model import FORMAT_VERSION as RB_FORMAT_VERSION
        from surrogates.solvers.reduced_basis.model import ReducedModel

        problem = ThermalBlock(resolution=9)
        solver = RBEIM(max_basis_size=4, eim_training_size=30, eim_check_size=10, training_set="random",
                       training_size=20)
        reductor = RBReductor(solver.build_system(problem))
        weak_greedy(reductor, solver.greedy_training_set(problem), 4, rtol=None)
        model = reductor.reduce({"pde": "thermal_block"})
        path = self.out / version / f"{name}.rb.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        if version == LEGACY:
            _save_reduced_v1_1(model, path)
            produced = ("ThermalBlock(resolution=9), RBEIM(max_basis_size=4) + weak_greedy; written in the .rb.h5 "
                        "format-1.1 layout (problem_target by import path, no 'kind')")
            format_version = "1.1"
        else:
            model.save(path)
            produced = "ThermalBlock(resolution=9), RBEIM(max_basis_size=4) + weak_greedy; ReducedModel.save"
            format_version = RB_FORMAT_VERSION
        mus = model.parameter_space.sample_uniform(3, np.random.default_rng(1))
        loaded = ReducedModel.load(path)
        solution = loaded.solve(mus)
        self._record(name, version, ".rb.h5", "reduced", format_version, "thermal_block",
                     "surrogates.solvers.reduced_basis.model.ReducedModel.load", produced,
                     {"mus": mus, "coefficients": solution.coefficients, "bound": solution.bound,
                      "fields": loaded.fields(solution.coefficients)})

    # -- preconditioner kind ---------------------------------------------------------------------------
    def preconditioner(self, name: str, version: str) -> None:
        from surrogates.pdes.darcy import Darcy
        from surrogates.solvers.finite_differences import diffusion_operator
        from surrogates.solvers.preconditioners import learned

        a = Darcy(resolution=8).sample_inputs(3, np.random.default_rng(0))["a"]
        matrices = [diffusion_operator(a_i) for a_i in a[:2]]
        model = learned.train_preconditioner(matrices, epochs=1, batch_size=2, samples=2, hidden=8, rounds=2, seed=0,
                                             progress=False)
        record = {"epochs": 1, "matrices": "Darcy(resolution=8), 2 coefficients", "loss": "solution"}
        path = self.out / version / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        if version == LEGACY:
            # the format-1 writer: torch.save of a plain dict, no surrogates metadata
            torch.save({"init_kwargs": dict(model.init_kwargs), "state_dict": model.state_dict(), "metadata": record}, path)
            produced = ("train_preconditioner(epochs=1, hidden=8, rounds=2) on 2 Darcy matrices; written in the "
                        "format-1 layout torch.save({'init_kwargs', 'state_dict', 'metadata'})")
            format_version = 1
        else:
            learned.save(model, path, record)
            produced = "train_preconditioner(epochs=1, hidden=8, rounds=2) on 2 Darcy matrices; learned.save"
            format_version = checkpoint_format()
        A = diffusion_operator(a[2]).tocsr()
        A.sort_indices()
        loaded = learned.load(path)
        L_factor = learned.factor_values(loaded, A)
        self._record(name, version, ".pt", "preconditioner", format_version, "gnn",
                     "surrogates.solvers.preconditioners.learned.load", produced,
                     {"A_data": A.data, "A_indices": A.indices, "A_indptr": A.indptr, "A_shape": np.asarray(A.shape),
                      "L_data": L_factor.data, "L_indices": L_factor.indices, "L_indptr": L_factor.indptr},
                     _relative_error(L_factor.data, _factor_float64(loaded, A, L_factor)))


    def dcdm(self, name: str, version: str) -> None:
        from surrogates.pdes.darcy import Darcy
        from surrogates.solvers.dcdm.grid import DirectionOperator
        from surrogates.solvers.dcdm.network import load as load_dcdm
        from surrogates.solvers.dcdm.training import train_dcdm
        from surrogates.solvers.finite_differences import diffusion_operator

        a = Darcy(resolution=8).sample_inputs(3, np.random.default_rng(0))["a"]
        matrices = [diffusion_operator(a_i) for a_i in a[:2]]
        settings = {"structure": "additive", "init": "identity", "scaling": "mean", "width": 4, "blocks": 1, "coarsest": 2}
        model = train_dcdm(matrices, epochs=1, steps_per_epoch=2, batch_size=4, ritz_steps=20, seed=0, progress=False,
                           **settings)
        path = self.out / version / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path, {"epochs": 1, "steps_per_epoch": 2, "matrices": "Darcy(resolution=8), 2 coefficients"})
        A = diffusion_operator(a[2]).tocsr()
        A.sort_indices()
        loaded = load_dcdm(path)
        r = torch.from_numpy(np.random.default_rng(1).standard_normal((2, A.shape[0])))
        y = DirectionOperator(loaded, A)(r).numpy()
        y64 = DirectionOperator(copy.deepcopy(loaded).double(), A)(r).numpy()  # the same weights in float64
        self._record(name, version, ".pt", "preconditioner", checkpoint_format(), "dcdm",
                     "surrogates.solvers.dcdm.network.load",
                     f"train_dcdm({', '.join(f'{k}={v!r}' for k, v in settings.items())}, epochs=1, steps_per_epoch=2) on "
                     "2 Darcy matrices (8 x 8); DCDMNet.save",
                     {"A_data": A.data, "A_indices": A.indices, "A_indptr": A.indptr, "A_shape": np.asarray(A.shape),
                      "r": r.numpy(), "d": y, "d_float64": y64},
                     _relative_error(y, y64))


def _factor_float64(model, A, reference) -> np.ndarray:
    """``factor_values`` with the network in float64 (same pattern and order as ``reference``)."""
    import scipy.sparse as sp

    from surrogates.solvers.preconditioners.learned import matrix_graph

    graph = matrix_graph(A)
    graph.x, graph.edge_attr = graph.x.double(), graph.edge_attr.double()
    with torch.no_grad():
        diagonal, lower = copy.deepcopy(model).double()(graph)
    n = graph.num_nodes
    i, j = graph.edge_index[1, graph.lower].numpy(), graph.edge_index[0, graph.lower].numpy()
    rows, cols = np.concatenate([np.arange(n), i]), np.concatenate([np.arange(n), j])
    vals = np.concatenate([diagonal.numpy(), lower.numpy()]) * graph.d_sqrt.numpy()[rows]
    L = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    L.sort_indices()
    if not (np.array_equal(L.indices, reference.indices) and np.array_equal(L.indptr, reference.indptr)):
        raise RuntimeError("float64 factor has another pattern")
    return L.data


# -- format 1 (before the checkpoint module), built explicitly ------------------------------------------
def _rewrite_as_v1(path: Path, task_path: str) -> None:
    """Replace a task checkpoint of the current format by what the format-1 task wrote (``git show ef95a2b``).

    Format 1: ``{"model": {"class": import path, "kwargs"}, "normalization", "data_schema", "task": import
    path, "version"}``; rollout checkpoints also ``"kind": "rollout"`` and ``"conditioning"`` (names and
    scale); pointwise ones ``"problem": {"class": import path, "kwargs"}`` and identity statistics. No
    ``format_version``, ``package_version``, ``training``. The ``state_dict`` of the format-1 tasks held the
    network under ``net.`` and the statistics again as the task's buffers (``input_normalizer.mean`` ...):
    the saved model's entries (``model.*``) without their prefix.
    """
    from surrogates.checkpoint import METADATA_KEY, MODEL_PREFIX, model_class

    contents = torch.load(path, map_location="cpu", weights_only=True)
    new = contents[METADATA_KEY]
    contents["state_dict"] = {key.removeprefix(MODEL_PREFIX): value for key, value in contents["state_dict"].items()}
    state = contents["state_dict"]

    def stats(name: str) -> dict[str, list[float]]:
        return {"mean": state[f"{name}.mean"].tolist(), "std": state[f"{name}.std"].tolist()}

    cls = model_class(new["model"]["name"])
    old: dict[str, Any] = {}
    if new["kind"] == "rollout":
        old["kind"] = "rollout"
    old["model"] = {"class": f"{cls.__module__}.{cls.__qualname__}", "kwargs": new["model"]["kwargs"]}
    if new["kind"] == "operator":
        old["normalization"] = {"input": stats("input_normalizer"), "target": stats("target_normalizer")}
    elif new["kind"] == "rollout":
        old["normalization"] = {"input": stats("state_normalizer"), "target": stats("state_normalizer")}
    else:  # the physics-informed task wrote identity statistics
        kwargs = new["model"]["kwargs"]
        d, c = kwargs.get("in_channels", 1), kwargs.get("out_channels", 1)
        old["normalization"] = {"input": {"mean": [0.0] * d, "std": [1.0] * d},
                                "target": {"mean": [0.0] * c, "std": [1.0] * c}}
    if new["kind"] == "rollout":
        old["conditioning"] = {**new["conditioning"], "scale": state["param_scale"].tolist()}
    old["data_schema"] = new["data_schema"]
    if new["kind"] == "pointwise":
        from surrogates.checkpoint.registry import physics_problem_class

        problem_cls = physics_problem_class(new["problem"]["name"])
        old["problem"] = {"class": f"{problem_cls.__module__}.{problem_cls.__qualname__}",
                          "kwargs": new["problem"]["kwargs"]}
    old["task"] = task_path
    old["version"] = V1_PACKAGE_VERSION
    contents[METADATA_KEY] = old
    torch.save(contents, path)


def _save_reduced_v1_1(model, path: Path) -> None:
    """``ReducedModel.save`` as of format 1.1 (``git show ef95a2b:surrogates/solvers/reduced_basis/model.py``)."""
    import h5py

    from surrogates.solvers.reduced_basis.model import _json_default

    arrays = {
        "operator/interpolation_matrix": model.operator_interpolation,
        "operator/entry_weights": model.operator_entries.weights,
        "operator/entry_points": model.operator_entries.points,
        "operator/reduced": model.reduced_operator,
        "rhs/interpolation_matrix": model.rhs_interpolation,
        "rhs/entry_weights": model.rhs_entries.weights,
        "rhs/entry_points": model.rhs_entries.points,
        "rhs/reduced": model.reduced_rhs,
        "estimator/R": model.residual_R,
        "estimator/gram": model.residual_gram,
        "basis/V": model.basis,
        "basis/free": model.layout.free,
    }
    problem = model.problem
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "surrogates.reduced_basis"
        f.attrs["format_version"] = "1.1"
        f.attrs["package_version"] = V1_PACKAGE_VERSION
        f.attrs["created"] = "2025-01-01T00:00:00+00:00"
        f.attrs["problem_target"] = f"{type(problem).__module__}.{type(problem).__qualname__}"
        f.attrs["problem_config"] = json.dumps(problem.config())
        f.attrs["parameter_space"] = json.dumps(model.parameter_space.to_dict())
        f.attrs["eim_error"] = float(model.eim_error)
        f.attrs["n_nodes"] = int(model.layout.n_nodes)
        f.attrs["grid_shape"] = json.dumps(list(model.layout.grid_shape) if model.layout.grid_shape else None)
        f.attrs["metadata"] = json.dumps(model.metadata, default=_json_default)
        for name, value in arrays.items():
            f.create_dataset(name, data=np.asarray(value))


# -- the set -------------------------------------------------------------------------------------------------
def _fno(**kwargs):
    from surrogates.models.fno import FNO

    return lambda: FNO(in_channels=1, out_channels=1, **kwargs)


def _entries(golden: Golden) -> list[tuple[str, str, Callable[[], None]]]:
    """Every golden file as ``(folder, name, write)``, in the order they are written."""
    from surrogates.models.mg_tfno import MGTFNO
    from surrogates.models.mgno import MgNO
    from surrogates.models.mlp import MLP
    from surrogates.models.pig import PIG
    from surrogates.models.tfno import TFNO
    from surrogates.models.unet import UNet

    box = [[-1.0, 1.0], [-1.0, 1.0]]
    fno_small = {"width": 6, "n_layers": 2, "projection_channels": 8}
    tfno_small = {"dim": 2, "modes": 3, **fno_small, "rank": 0.5}
    v = golden.current
    return [
        (v, "fno1d", lambda: golden.operator(
            "fno1d", v, _fno(dim=1, modes=6, **fno_small), "burgers", ["u"], ["u"],
            "FNO dim 1 on Burgers (64 points, first -> last snapshot)", input_time=0, target_time=-1)),
        (v, "fno2d", lambda: golden.operator(
            "fno2d", v, _fno(dim=2, modes=3, **fno_small), "darcy", ["a"], ["u"], "FNO dim 2 on Darcy 16 x 16")),
        (v, "fno3d", lambda: golden.operator(
            "fno3d", v, _fno(dim=3, modes=[2, 3, 3], width=4, n_layers=2, projection_channels=8), "navier_stokes",
            ["omega"], ["omega"], "FNO dim 3 on Navier-Stokes space-time (4 times x 8 x 8; SpaceTimeDataModule)",
            space_time=True)),
        (v, "mgno", lambda: golden.operator(
            "mgno", v, lambda: MgNO(1, 1, width=4, n_layers=2, levels=3, bias_points=4), "darcy", ["a"], ["u"],
            "MgNO on Darcy 16 x 16")),
        (v, "unet", lambda: golden.operator(
            "unet", v, lambda: UNet(1, 1, dim=2, hidden_channels=4, channel_multipliers=[1, 2], norm_groups=2),
            "darcy", ["a"], ["u"], "U-Net (operator) on Darcy 16 x 16")),
        (v, "tfno", lambda: golden.operator(
            "tfno", v, lambda: TFNO(1, 1, factorization="tucker", round_up_modes=["layers"], **tfno_small), "darcy",
            ["a"], ["u"], "TFNO (Tucker, rank 0.5, layers rounded up) on Darcy 16 x 16")),
        (v, "tfno_cp", lambda: golden.operator(
            "tfno_cp", v, lambda: TFNO(1, 1, factorization="cp", **tfno_small), "darcy", ["a"], ["u"],
            "TFNO (CP, rank 0.5) on Darcy 16 x 16")),
        (v, "mg_tfno", lambda: golden.operator(
            "mg_tfno", v, lambda: MGTFNO(1, 1, factorization="tucker", levels=1, **tfno_small), "darcy", ["a"], ["u"],
            "MG-TFNO (Tucker, rank 0.5, 2 x 2 patches with one coarser level) on Darcy 16 x 16")),
        (v, "pde_refiner", lambda: golden.rollout(
            "pde_refiner", v, 2, "PDERefiner(num_refinement_steps=2)", ema_decay=0.995)),
        (v, "mse_unet", lambda: golden.rollout("mse_unet", v, 0, "PDERefiner(num_refinement_steps=0), the MSE U-Net")),
        (v, "pig", lambda: golden.pointwise(
            "pig", v, lambda: PIG(in_channels=2, n_gaussians=24, bounds=box, sigma_init=0.1), "PIG(n_gaussians=24)")),
        (v, "pinn", lambda: golden.pointwise(
            "pinn", v, lambda: MLP(in_channels=2, width=12, depth=2, bounds=box), "MLP(width=12, depth=2)")),
        (v, "hc_moe", lambda: golden.hard_constraint("hc_moe", "hard-constraint MoE, experts [1, 2]", experts=[1, 2])),
        (v, "hc_single", lambda: golden.hard_constraint(
            "hc_single", "single hard constraint, experts [1, 1]", experts=[1, 1])),
        (v, "soft_constraint", lambda: golden.hard_constraint(
            "soft_constraint", "soft-constraint baseline", constraint="soft", experts=None)),
        (v, "thermal_block", lambda: golden.reduced("thermal_block", v)),
        (v, "learned_preconditioner", lambda: golden.preconditioner("learned_preconditioner", v)),
        (v, "dcdm", lambda: golden.dcdm("dcdm", v)),
        # format 1: unversioned checkpoint metadata, old preconditioner layout, .rb.h5 format 1.1
        (LEGACY, "fno2d", lambda: golden.operator(
            "fno2d", LEGACY, _fno(dim=2, modes=3, **fno_small), "darcy", ["a"], ["u"], "FNO dim 2 on Darcy 16 x 16",
            legacy=True)),
        (LEGACY, "pde_refiner", lambda: golden.rollout(
            "pde_refiner", LEGACY, 2, "PDERefiner(num_refinement_steps=2)", legacy=True)),
        (LEGACY, "pig", lambda: golden.pointwise(
            "pig", LEGACY, lambda: PIG(in_channels=2, n_gaussians=24, bounds=box, sigma_init=0.1), "PIG(n_gaussians=24)",
            legacy=True)),
        (LEGACY, "thermal_block", lambda: golden.reduced("thermal_block", LEGACY)),
        (LEGACY, "learned_preconditioner", lambda: golden.preconditioner("learned_preconditioner", LEGACY)),
    ]


def _write_all(golden: Golden, folders: list[str], names: set[str] | None = None) -> None:
    """Write the entries of ``folders`` (only those named in ``names``, if given)."""
    current = None
    for folder, name, write in _entries(golden):
        if folder in folders and (names is None or name in names):
            if folder != current:
                print(f"{folder}:")
                current = folder
            write()


def recompute_outputs(out: Path, keys: list[str], reason: str) -> int:
    """Recompute ``y`` and ``y_converged`` of hard-constraint entries from their model files and stored ``x``.

    The model files are not touched (they stay what users' files of that format are); only what their reader
    now computes from them is stored again, with ``reason`` and the date in the entry's ``outputs_recomputed``.
    """
    import datetime

    from surrogates import Surrogate

    if not reason.strip():
        print("--recompute-outputs needs --reason: the manifest records why the stored outputs changed", file=sys.stderr)
        return 2
    manifest = json.loads((out / MANIFEST).read_text())
    entries = {f"{entry['version']}/{entry['name']}": entry for entry in manifest["files"]}
    unknown = [key for key in keys if key not in entries or entries[key]["model"] != "hc_moe"]
    if unknown:
        print(f"not hard-constraint entries of the manifest: {unknown}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    for key in keys:
        entry = entries[key]
        with np.load(out / entry["data"]) as stored:
            arrays = {name: stored[name] for name in stored.files}
        surrogate = Surrogate.load(out / entry["file"])
        arrays["y"] = surrogate.predict(arrays["x"])
        if "y_converged" in arrays:  # the same model with its solver run to round-off, as when it was written
            arrays["y_converged"] = _converged_output(surrogate, arrays["x"])
        np.savez_compressed(out / entry["data"], **arrays)
        entry["fp32_error"] = _relative_error(arrays["y"], _operator_float64(surrogate, arrays["x"]))
        entry["outputs_recomputed"] = f"{datetime.date.today().isoformat()}: {reason.strip()}"
        print(f"  {entry['data']}: outputs recomputed, fp32 error {entry['fp32_error']:.1e}")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"golden folder (default {DEFAULT_OUT})")
    parser.add_argument("--only", choices=("all", "current", "legacy"), default="all",
                        help="write the current format's folder (v<FORMAT_VERSION>), the format-1 folder (v1), or both")
    parser.add_argument("--add", nargs="+", metavar="NAME", default=None,
                        help="write only these entries of the current format's folder, next to the files already there "
                             "(for a model kind added after the folder was written; refuses names whose files exist)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing golden folders (only when the files must change on purpose; after a "
                             "format bump write the new folder with --only current and keep the old ones)")
    parser.add_argument("--recompute-outputs", nargs="+", metavar="VERSION/NAME", default=None,
                        help="recompute the stored outputs of these hard-constraint entries (e.g. v2/hc_moe) from their "
                             "unchanged model files and stored inputs, after a deliberate change of what the model "
                             "computes; needs --reason, recorded in the manifest")
    parser.add_argument("--reason", default="", help="why the outputs changed (with --recompute-outputs)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.recompute_outputs:
        return recompute_outputs(out, args.recompute_outputs, args.reason)
    folders = {"all": [current_folder(), LEGACY], "current": [current_folder()], "legacy": [LEGACY]}[args.only]
    names = None
    if args.add:
        folders, names = [current_folder()], set(args.add)
        known = {name for folder, name, _ in _entries(Golden(out, Data(out), out)) if folder == current_folder()}
        if names - known:
            print(f"unknown entries {sorted(names - known)}; the current folder's entries: {sorted(known)}", file=sys.stderr)
            return 2
        existing = sorted(p for p in (out / current_folder()).glob("*") if p.stem in names)
    else:
        existing = [out / folder for folder in folders if (out / folder).exists()]
    if existing and not args.force:
        print(f"refusing to overwrite {', '.join(str(p) for p in existing)}: the committed golden files are what CI "
              "loads, so that files of every format keep loading. Pass --force only to replace them on purpose; after "
              "a format bump, write the new format's folder (--only current) and keep the old folders.",
              file=sys.stderr)
        return 2
    import lightning  # noqa: F401  (sets its loggers' levels on import: quiet them after)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    torch.set_num_threads(1)  # one summation order: regenerating on the same machine gives the same weights
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        staging = Path(tmp) / "golden"
        # data and runs by relative paths: the checkpoints record the data folder, which must not name the temporary one
        os.chdir(tmp)
        try:
            golden = Golden(staging, Data(Path("data")), Path("."))
            _write_all(golden, folders, names)
        finally:
            os.chdir(cwd)
        out.mkdir(parents=True, exist_ok=True)
        for folder in folders:
            if names is not None:  # --add: the new files join the folder; nothing else in it is touched
                (out / folder).mkdir(parents=True, exist_ok=True)
                for path in (staging / folder).iterdir():
                    shutil.copy2(path, out / folder / path.name)
                continue
            if (out / folder).exists():
                shutil.rmtree(out / folder)
            shutil.copytree(staging / folder, out / folder)
    # the manifest keeps the entries of the folders not rewritten (older formats), and with --add every other entry
    rewritten = {(entry["version"], entry["name"]) for entry in golden.entries}
    kept = []
    if (out / MANIFEST).exists():
        kept = [entry for entry in json.loads((out / MANIFEST).read_text())["files"]
                if (entry["version"], entry["name"]) not in rewritten and (names is not None or entry["version"] not in folders)]
    entries = sorted(kept + golden.entries, key=lambda entry: -int(entry["version"][1:]))  # newest format first (stable)
    manifest = {
        "description": "Golden model files: each is loaded by its public reader in tests/test_golden.py, which "
                       "reproduces the stored output. See README.md.",
        "files": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(entry["bytes"] for entry in golden.entries)
    print(f"wrote {len(golden.entries)} golden files to {out} ({total / 1024:.0f} KiB of model files)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
