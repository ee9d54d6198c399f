"""Crafted model files must be refused with CheckpointError by every reader, and run nothing.

Each hostile file names something to call (``subprocess.run``, ``os.system``, ``builtins.eval``), a
class outside the package, a package class of the wrong base type, or carries a ``__reduce__`` pickle.
The readers: ``Surrogate.load``, ``RolloutSurrogate.load``, the service's registry, ``surrogates-evaluate``
and resuming with ``ckpt_path=``. A marker file that any of the payloads would create must never appear.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import pytest
import torch

from surrogates import Surrogate
from surrogates.checkpoint import METADATA_KEY, CheckpointMetadata, ClassSpec, write_checkpoint
from surrogates.errors import CheckpointError
from surrogates.models.fno import FNO
from surrogates.models.normalized import NormalizedOperator
from surrogates.serve.registry import Registry
from surrogates.serve.rollout import RolloutSurrogate
from tests.cli.conftest import compose_cfg  # noqa: F401  (fixture)


class Payload:
    """Unpickling this calls ``os.system`` (what a malicious pickle does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _valid_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=2, modes=3, width=4, projection_channels=4)
    schema = {"pde": "darcy", "inputs": ["a"], "targets": ["u"], "spatial_dims": ["x", "y"], "spatial_shape": [8, 8]}
    meta = CheckpointMetadata(
        kind="operator", model=ClassSpec.from_dict(net.init_config(), "model"),
        data_schema=schema,
    )
    return write_checkpoint(path, meta, NormalizedOperator(net).state_dict())


def _edited(base: Path, path: Path, edit) -> Path:
    contents = torch.load(base, weights_only=True)
    edit(contents[METADATA_KEY])
    torch.save(contents, path)
    return path


def _edited_state(base: Path, path: Path, key: str, edit) -> Path:
    contents = torch.load(base, weights_only=True)
    contents["state_dict"][key] = edit(contents["state_dict"][key])
    torch.save(contents, path)
    return path


def hostile_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Every crafted file, by what it tries."""
    folder.mkdir(parents=True, exist_ok=True)
    base = _valid_checkpoint(folder / ".base" / "valid.ckpt")
    touch = ["touch", str(marker)]

    def model(spec):
        return lambda meta: meta.__setitem__("model", spec)

    def legacy(spec):  # format 1 named classes by import path
        def edit(meta):
            meta.pop("format_version")
            meta["model"] = spec
        return edit

    files = {
        "subprocess_run": _edited(base, folder / "subprocess_run.ckpt", model({"name": "subprocess.run", "kwargs": {"args": touch}})),
        "os_system": _edited(base, folder / "os_system.ckpt", model({"name": "os.system", "kwargs": {"command": f"touch {marker}"}})),
        "builtins_eval": _edited(
            base, folder / "builtins_eval.ckpt", model({"name": "builtins.eval", "kwargs": {"source": f"open({str(marker)!r}, 'w')"}})
        ),
        "legacy_subprocess_run": _edited(
            base, folder / "legacy_subprocess_run.ckpt", legacy({"class": "subprocess.run", "kwargs": {"args": touch}})
        ),
        "legacy_os_system": _edited(
            base, folder / "legacy_os_system.ckpt", legacy({"class": "os.system", "kwargs": {"command": f"touch {marker}"}})
        ),
        "outside_package": _edited(
            base, folder / "outside_package.ckpt", legacy({"class": "torch.nn.Linear", "kwargs": {"in_features": 1, "out_features": 1}})
        ),
        "wrong_base_type": _edited(
            base, folder / "wrong_base_type.ckpt",
            legacy({"class": "surrogates.data.generation.generate_dataset", "kwargs": {"root": str(marker)}}),
        ),
        "problem_as_model": _edited(base, folder / "problem_as_model.ckpt", model({"name": "helmholtz", "kwargs": {}})),
        "rollout_subprocess": _edited(
            base, folder / "rollout_subprocess.ckpt",
            lambda meta: meta.update(kind="rollout", model={"name": "subprocess.run", "kwargs": {"args": touch}}),
        ),
        "pointwise_problem_os_system": _edited(
            base, folder / "pointwise_problem_os_system.ckpt",
            lambda meta: meta.update(kind="pointwise", problem={"name": "os.system", "kwargs": {"command": f"touch {marker}"}}),
        ),
    }
    # files that name nothing hostile but hold weights a reader must not serve
    lifting = "model.net.lifting.weight"
    files["nan_weights"] = _edited_state(base, folder / "nan_weights.ckpt", lifting, lambda w: torch.full_like(w, float("nan")))
    files["complex_weights"] = _edited_state(
        base, folder / "complex_weights.ckpt", lifting, lambda w: torch.complex(w, torch.ones_like(w))
    )
    files["missing_arguments"] = _edited(
        base, folder / "missing_arguments.ckpt", lambda meta: meta["model"]["kwargs"].pop("activation")
    )
    files["huge_padding"] = _edited(  # an 8x8 input would be padded to 1608x1608
        base, folder / "huge_padding.ckpt", lambda meta: meta["model"]["kwargs"].update(padding=200.0)
    )
    files["endless_layers"] = _edited(  # the meta skeleton grew without end
        base, folder / "endless_layers.ckpt", lambda meta: meta["model"]["kwargs"].update(n_layers=10**30)
    )
    shared: list = [0.0]
    for _ in range(20):  # memo references: 2^20 values in the service's JSON from a few hundred bytes
        shared = [shared, shared]
    files["shared_metadata"] = _edited(
        base, folder / "shared_metadata.ckpt", lambda meta: meta.setdefault("training", {}).update(history=shared)
    )
    reduce_pickle = folder / "reduce_pickle.ckpt"
    torch.save({"state_dict": {}, METADATA_KEY: {"model": Payload(marker)}}, reduce_pickle)
    files["reduce_pickle"] = reduce_pickle
    return files


@pytest.fixture(scope="module")
def marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("marker") / "MARKER"


@pytest.fixture(scope="module")
def files(tmp_path_factory, marker) -> dict[str, Path]:
    return hostile_files(tmp_path_factory.mktemp("hostile"), marker)


@pytest.fixture(autouse=True)
def no_marker_after(marker, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # payloads with relative paths would land here
    yield
    assert not marker.exists(), "a crafted file ran code"
    assert not list(tmp_path.rglob("MARKER*")), "a crafted file ran code in the working folder"


NAMES = [
    "subprocess_run", "os_system", "builtins_eval", "legacy_subprocess_run", "legacy_os_system", "outside_package",
    "wrong_base_type", "problem_as_model", "rollout_subprocess", "pointwise_problem_os_system", "reduce_pickle",
    "nan_weights", "complex_weights", "missing_arguments", "huge_padding", "endless_layers", "shared_metadata",
]


# Why each file is refused: a CheckpointError raised for another reason (a reader failing on something else of the
# file) would leave the check the file aims at untested.
UNKNOWN = "unknown model '{}'; known: ["
REASONS = {
    "subprocess_run": UNKNOWN.format("subprocess.run"), "os_system": UNKNOWN.format("os.system"),
    "builtins_eval": UNKNOWN.format("builtins.eval"), "legacy_subprocess_run": UNKNOWN.format("subprocess.run"),
    "legacy_os_system": UNKNOWN.format("os.system"), "outside_package": UNKNOWN.format("torch.nn.Linear"),
    "wrong_base_type": UNKNOWN.format("surrogates.data.generation.generate_dataset"),
    "problem_as_model": UNKNOWN.format("helmholtz"), "rollout_subprocess": UNKNOWN.format("subprocess.run"),
    "pointwise_problem_os_system": "unknown physics problem 'os.system'",
    "reduce_pickle": "cannot read checkpoint: not a weights-only torch file",
    "nan_weights": "parameter 'net.lifting.weight' holds NaN or infinite values",
    "complex_weights": "weight 'net.lifting.weight' is torch.complex64 in the file but torch.float32 in the model",
    "missing_arguments": "the model arguments lack ['activation'] of FNO",
    "huge_padding": "cannot build FNO from the stored arguments: ValueError: padding must be in [0, 1], got 200.0",
    "endless_layers": "cannot build FNO from the stored arguments: ValueError: n_layers must be in [0, 1024], got 10",
    "shared_metadata": "training.history[0]",
}
# the files of an operator model naming nothing hostile: the rollout reader refuses their kind before their weights
OPERATOR_KIND = "holds a 'operator' model, not the 'rollout' kind this loader takes"


@pytest.mark.parametrize("name", NAMES)
def test_surrogate_load_refuses(files, name):
    with pytest.raises(CheckpointError) as error:
        Surrogate.load(files[name])
    assert str(error.value).startswith(f"{files[name]}: {REASONS[name]}"), str(error.value)
    if name == "shared_metadata":
        assert "is a container met twice (shared or inside itself): stored plain data is a tree" in str(error.value)


@pytest.mark.parametrize("name", NAMES)
def test_rollout_surrogate_load_refuses(files, name):
    with pytest.raises(CheckpointError) as error:
        RolloutSurrogate.load(files[name])
    operator = name in ("nan_weights", "complex_weights", "missing_arguments", "huge_padding", "endless_layers")
    reason = OPERATOR_KIND if operator else REASONS[name]
    assert str(error.value).startswith(f"{files[name]}: {reason}"), str(error.value)


def test_refusals_say_why(files):
    messages = {}
    for name in ("subprocess_run", "outside_package", "wrong_base_type", "reduce_pickle", "pointwise_problem_os_system"):
        with pytest.raises(CheckpointError) as error:
            from surrogates.serve.rollout import load_surrogate

            load_surrogate(files[name])
        messages[name] = str(error.value)
    assert "unknown model 'subprocess.run'" in messages["subprocess_run"]
    assert "unknown model 'torch.nn.Linear'" in messages["outside_package"]
    assert "unknown model 'surrogates.data.generation.generate_dataset'" in messages["wrong_base_type"]
    assert "weights-only" in messages["reduce_pickle"]
    assert "unknown physics problem 'os.system'" in messages["pointwise_problem_os_system"]


def test_weights_a_reader_must_not_serve_are_refused_with_the_reason(files):
    with pytest.raises(CheckpointError, match="parameter 'net.lifting.weight' holds NaN or infinite values"):
        Surrogate.load(files["nan_weights"])
    with pytest.raises(CheckpointError, match="'net.lifting.weight' is torch.complex64 in the file but torch.float32"):
        Surrogate.load(files["complex_weights"])
    with pytest.raises(CheckpointError, match=r"the model arguments lack \['activation'\] of FNO"):
        Surrogate.load(files["missing_arguments"])
    with pytest.raises(CheckpointError, match=r"padding must be in \[0, 1\], got 200.0"):
        Surrogate.load(files["huge_padding"])


def test_service_registry_lists_every_hostile_file_as_unavailable(files):
    registry = Registry.from_folder(next(iter(files.values())).parent)
    assert not registry.ready
    assert {entry.name for entry in registry.unavailable} == set(NAMES)
    assert all(entry.error.startswith("CheckpointError") for entry in registry.unavailable)


@pytest.mark.parametrize("name", ["subprocess_run", "legacy_os_system", "reduce_pickle"])
def test_evaluate_refuses(files, name, compose_cfg):
    from surrogates.cli.evaluate import evaluate

    with pytest.raises(CheckpointError, match=re.escape(REASONS[name])):
        evaluate(compose_cfg("evaluate", [f"ckpt={files[name]}", "data_dir=unused"]))


@pytest.mark.parametrize("name", ["subprocess_run", "legacy_subprocess_run", "reduce_pickle"])
def test_resume_refuses(files, name, compose_cfg, darcy_dir):
    from surrogates.cli.train import train

    cfg = compose_cfg("train", [
        "experiment=darcy_fno_demo", f"data.data_dir={darcy_dir}", f"ckpt_path={files[name]}",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
    ])
    with pytest.raises(CheckpointError, match=re.escape(REASONS[name])):
        train(cfg)


@pytest.fixture(scope="module")
def reduced_model_file(tmp_path_factory) -> Path:
    from surrogates.pdes.thermal_block import ThermalBlock
    from tests.solvers.reduced_basis.conftest import build

    _, reductor, _ = build(ThermalBlock(resolution=9), max_basis_size=3, training_set="grid", training_size=2)
    return reductor.reduce({"pde": "thermal_block"}).save(tmp_path_factory.mktemp("rb") / "thermal.rb.h5")


@pytest.mark.parametrize("name", ["subprocess.run", "os.system", "surrogates.pdes.darcy.Darcy", "surrogates.cli.train.main"])
def test_reduced_model_naming_a_function_is_refused(reduced_model_file, tmp_path, marker, name):
    from surrogates.solvers.reduced_basis.model import ReducedModel

    path = tmp_path / "hostile.rb.h5"
    path.write_bytes(reduced_model_file.read_bytes())
    with h5py.File(path, "r+") as f:
        f.attrs["problem_target"] = name
        f.attrs["problem_config"] = '{"args": ["touch", "%s"]}' % marker
    with pytest.raises(CheckpointError, match=f"unknown reduced-basis problem '{name}'"):
        ReducedModel.load(path)
    registry = Registry.from_folder(tmp_path)
    assert [entry.name for entry in registry.unavailable] == ["hostile"]
    assert "unknown reduced-basis problem" in registry.unavailable[0].error


def test_reduced_model_of_format_1_1_names_its_problem_by_import_path(reduced_model_file, tmp_path):
    from surrogates.solvers.reduced_basis.model import ReducedModel

    path = tmp_path / "legacy.rb.h5"
    path.write_bytes(reduced_model_file.read_bytes())
    with h5py.File(path, "r+") as f:
        assert f.attrs["problem_target"] == "thermal_block"  # format 1.2: the registered name
        f.attrs["problem_target"] = "surrogates.pdes.thermal_block.ThermalBlock"
        f.attrs["format_version"] = "1.1"
    assert type(ReducedModel.load(path).problem).__name__ == "ThermalBlock"  # an allowed class's path: migrated


def test_learned_preconditioner_naming_a_function_is_refused(tmp_path, marker):
    from surrogates.solvers.preconditioners import learned

    model = learned.PreconditionerGNN(hidden=4, rounds=1)
    path = learned.save(model, tmp_path / "p.pt")
    contents = torch.load(path, weights_only=True)
    contents[METADATA_KEY]["model"] = {"name": "subprocess.run", "kwargs": {"args": ["touch", str(marker)]}}
    torch.save(contents, path)
    with pytest.raises(CheckpointError, match="unknown learned preconditioner 'subprocess.run'"):
        learned.load(path)
    torch.save({"init_kwargs": {"hidden": 4, "rounds": 1}, "state_dict": {}, "metadata": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        learned.load(path)


def test_model_files_declaring_more_than_they_hold_are_refused_before_reading(reduced_model_file, tmp_path):
    """A reduced-basis or power-limit model file with a gzip-compressed dataset of zeros that declares 2 GiB
    (the file is a few hundred KiB) is refused from its header, before any dataset is read."""
    from surrogates.solvers.reduced_basis.model import ReducedModel
    from surrogates.solvers.reduced_basis.power_io import PowerLimitsFileError, load_partition

    path = tmp_path / "bomb.rb.h5"
    path.write_bytes(reduced_model_file.read_bytes())
    with h5py.File(path, "r+") as f:
        f.create_dataset("padding", shape=(1 << 28,), dtype="f8", chunks=(1 << 20,), compression="gzip", fillvalue=0.0)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="declare .* bytes, more than a file of"):
        ReducedModel.load(path)
    with pytest.raises(PowerLimitsFileError, match="decompression bomb"):
        load_partition(path)
    assert ReducedModel.load(reduced_model_file).problem is not None  # an honest file still loads
