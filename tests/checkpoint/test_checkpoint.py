"""The checkpoint module: typed metadata, plain data, allowlisted names, format migration, safe building."""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from surrogates.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    CheckpointMetadata,
    ClassSpec,
    NotPlainData,
    build_model,
    check_plain,
    migrate_v2,
    read_checkpoint,
    register_model,
    registered_models,
    to_plain,
    write_checkpoint,
)
from surrogates.checkpoint.registry import _MODELS
from surrogates.errors import CheckpointError
from surrogates.models.base import OperatorModel
from surrogates.models.fno import FNO
from surrogates.models.normalized import NormalizedOperator, NormalizedStepper
from surrogates.models.pde_refiner import PDERefiner
from surrogates.nn.normalization import Normalizer


def _fno() -> FNO:
    torch.manual_seed(0)
    return FNO(in_channels=1, out_channels=1, dim=2, modes=3, width=4, projection_channels=4)


def _metadata(net, **changes) -> CheckpointMetadata:
    fields = dict(
        kind="operator", model=ClassSpec.from_dict(net.init_config(), "model"),
        data_schema={"inputs": ["a"], "targets": ["u"], "spatial_dims": ["x", "y"], "spatial_shape": [8, 8]},
        task="operator_regression", training={"epoch": 3, "metrics": {"val/rel_l2": 0.1}}, package_version="0.1.0",
    )
    return CheckpointMetadata(**{**fields, **changes})


def _raw(net, **changes) -> dict:
    return _metadata(net).to_dict() | changes


def _wrapped(net) -> NormalizedOperator:
    """The saved model of an operator checkpoint: input statistics (1, 2), target statistics (0.5, 0.25)."""
    return NormalizedOperator(net, Normalizer.from_stats([1.0], [2.0]), Normalizer.from_stats([0.5], [0.25]))


# -- metadata ---------------------------------------------------------------------------------------
def test_metadata_round_trips_through_plain_data():
    meta = _metadata(_fno())
    raw = meta.to_dict()
    check_plain(raw)
    assert raw["format_version"] == FORMAT_VERSION and raw["model"]["name"] == "fno"
    assert CheckpointMetadata.from_dict(raw) == meta


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": FORMAT_VERSION + 1}, "newer than this package reads"),
        ({"format_version": "2"}, "format_version must be a positive integer"),
        ({"kind": "script"}, "unknown kind 'script'"),
        ({"model": {"name": "fno"}}, r"'model' lacks \['kwargs'\]"),
        ({"model": {"name": "fno", "kwargs": {"modes": (3, 3)}}}, "not plain data"),
        ({"model": {"name": "fno", "kwargs": {"width": torch.ones(1)}}}, r"model.kwargs.width is a torch.Tensor"),
        # format 2 kept the statistics in the metadata: they are checked when migrated
        ({"format_version": 2, "normalization": {"input": {"mean": [float("nan")], "std": [1.0]}}}, "NaN or infinite"),
        ({"format_version": 2, "normalization": {"input": {"mean": [0.0], "std": [0.0]}}}, "std' must be positive"),
        ({"format_version": 2, "normalization": {"input": {"mean": [0.0, 1.0], "std": [1.0]}}},
         "2 means but 1 standard deviations"),
        ({"format_version": 2, "conditioning": {"names": ["dt"], "scale": [0.0]}}, "finite, non-zero"),
        # format 3 keeps them once, in the state_dict
        ({"normalization": {"input": {"mean": [0.0], "std": [1.0]}}}, "must not hold 'normalization'"),
        ({"conditioning": {"names": ["dt"], "scale": [0.8]}}, "must not hold 'scale'"),
        ({"data_schema": {"inputs": "a"}}, "data_schema: inputs must be a list of strings"),
        ({"training": [1, 2]}, "'training' must be a mapping"),
    ],
)
def test_invalid_metadata_is_refused_with_the_reason(changes, message, tmp_path):
    with pytest.raises(CheckpointError, match=message) as error:
        CheckpointMetadata.from_dict(_raw(_fno(), **changes), tmp_path / "m.ckpt")
    assert str(tmp_path / "m.ckpt") in str(error.value)


def test_missing_model_key_is_refused():
    raw = _raw(_fno())
    del raw["model"]
    with pytest.raises(CheckpointError, match="lacks 'model'"):
        CheckpointMetadata.from_dict(raw)


def test_format_1_metadata_migrates():
    net = _fno()
    legacy = {  # what the tasks wrote before format 2 (no format_version)
        "model": {"class": "surrogates.models.fno.FNO", "kwargs": net.init_kwargs},
        "normalization": {"input": {"mean": [1.0], "std": [2.0]}, "target": {"mean": [0.5], "std": [0.25]}},
        "data_schema": {"inputs": ["a"], "targets": ["u"]},
        "task": "surrogates.tasks.operator_regression.OperatorRegression",
        "version": "0.1.0",
    }
    meta = CheckpointMetadata.from_dict(legacy)
    assert (meta.kind, meta.model.name, meta.task, meta.package_version) == ("operator", "fno", "operator_regression", "0.1.0")
    assert meta.model.kwargs == net.init_kwargs and meta.format_version == FORMAT_VERSION
    pointwise = {**legacy, "model": {"class": "surrogates.models.pig.PIG", "kwargs": {"in_channels": 2}},
                 "problem": {"class": "surrogates.pdes.physics.helmholtz.Helmholtz2D", "kwargs": {}},
                 "task": "surrogates.tasks.physics_informed.PhysicsInformed"}
    meta = CheckpointMetadata.from_dict(pointwise)
    assert (meta.kind, meta.model.name, meta.problem.name) == ("pointwise", "pig", "helmholtz")
    subclass = {**pointwise, "task": "my_project.tasks.MyPhysicsInformed"}  # a user's task: the problem decides
    assert CheckpointMetadata.from_dict(subclass).kind == "pointwise"
    rollout = {**legacy, "kind": "rollout", "model": {"class": "surrogates.models.pde_refiner.PDERefiner", "kwargs": {}}}
    assert CheckpointMetadata.from_dict(rollout).kind == "rollout"


# -- plain data -------------------------------------------------------------------------------------
def test_to_plain_converts_hydra_containers_and_tuples():
    config = OmegaConf.create({"weights": {"boundary": 10}, "modes": [4, 4]})
    assert to_plain({"a": config, "b": (1, 2.5), "c": np.float64(0.5)}) == {
        "a": {"weights": {"boundary": 10}, "modes": [4, 4]}, "b": [1, 2.5], "c": 0.5,
    }
    with pytest.raises(NotPlainData, match="x.f is a builtins.function"):
        to_plain({"x": {"f": lambda: None}})


def test_check_plain_refuses_deep_nesting():
    value: list = []
    for _ in range(100):
        value = [value]
    # refused at the first list past MAX_DEPTH (32) levels, saying why: a list is otherwise plain data
    with pytest.raises(NotPlainData, match=r"^(\[0\]){33} is nested deeper than 32 levels"):
        check_plain(value)
    for _ in range(68):  # 32 levels are accepted
        value = value[0]
    check_plain(value)


def test_check_plain_refuses_shared_and_recursive_containers():
    """A pickle can make one container appear many times (memo references): [x, x] nested 30 times is a few
    hundred bytes in a file and 2^30 values for anything that walks or shows it."""
    node: list = [0.0]
    for _ in range(20):  # 2^20 values as a tree (modest, so that an unbounded check would still end)
        node = [node, node]
    with pytest.raises(NotPlainData, match=r"history\[0\].*\[1\] is a container met twice"):
        check_plain({"history": node})
    recursive: list = [1]
    recursive.append(recursive)
    with pytest.raises(NotPlainData, match="met twice"):
        check_plain(recursive)
    same = {"a": 1}
    with pytest.raises(NotPlainData, match=r"y is a container met twice"):
        check_plain({"x": same, "y": same})
    check_plain({"x": {"a": 1}, "y": {"a": 1}})  # equal but separate: a tree


def test_check_plain_bounds_the_size_of_plain_data():
    from surrogates.checkpoint.plain import MAX_NODES, MAX_STRING

    check_plain(list(range(MAX_NODES - 1)))
    with pytest.raises(NotPlainData, match=f"past the {MAX_NODES}th value"):
        check_plain(list(range(MAX_NODES)))
    with pytest.raises(NotPlainData, match=f"x is a string of {MAX_STRING + 1} characters"):
        check_plain({"x": "a" * (MAX_STRING + 1)})
    with pytest.raises(NotPlainData, match="a key of x is a string"):
        check_plain({"x": {"k" * (MAX_STRING + 1): 1}})
    long = "s" * MAX_STRING  # one string repeated by reference: small in a pickle, not in JSON
    with pytest.raises(NotPlainData, match=r"x\[63\] is past the 4194304th character"):
        check_plain({"x": [long] * 100})
    deep: dict = {"leaf": 1}
    for _ in range(30):  # the location of an error is formatted once, with long keys shortened
        deep = {"k" * 1000: deep}
    with pytest.raises(NotPlainData, match=r"^k{37}\.\.\.\.k{37}\.\.\..*\.leaf is a builtins.set"):
        deep_leaf = deep
        for _ in range(30):
            deep_leaf = next(iter(deep_leaf.values()))
        deep_leaf["leaf"] = set()
        check_plain(deep)


def test_writers_store_shared_containers_as_a_tree(tmp_path):
    """What a writer shares in memory is copied, so that its file reads back (the readers refuse sharing)."""
    from surrogates.schema import DataSchema

    shared = ["a", "b"]
    schema = DataSchema(inputs=("a",), targets=("u",), reader={"name": "xarray", "x": shared, "y": shared})
    net = _fno()
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net, data_schema=schema), _wrapped(net).state_dict())
    assert read_checkpoint(path).metadata.data_schema.reader == {"name": "xarray", "x": shared, "y": shared}


def test_metadata_built_from_shared_references_is_refused_at_once(tmp_path):
    import time

    path = _valid_file(tmp_path / "m.ckpt")
    contents = torch.load(path, weights_only=True)
    node: list = [0.0]
    for _ in range(20):  # 2^20 values as a tree, 2^30 in the audit's file (hours to walk)
        node = [node, node]
    contents[METADATA_KEY]["training"]["history"] = node
    torch.save(contents, path)
    assert path.stat().st_size < 100_000
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="training.history.* is a container met twice"):
        read_checkpoint(path)
    assert time.perf_counter() - start < 5


# -- files ------------------------------------------------------------------------------------------
def test_write_then_read_rebuilds_the_same_model(tmp_path):
    net = _fno()
    model = _wrapped(net).eval()
    path = write_checkpoint(tmp_path / "sub" / "m.ckpt", _metadata(net), model.state_dict(), epoch=3)
    assert [p.name for p in path.parent.iterdir()] == ["m.ckpt"]  # no temporary file left
    checkpoint = read_checkpoint(path)
    assert checkpoint.kind == "operator" and checkpoint.training_summary()["epoch"] == 3
    # format 3: the statistics are in the state_dict only, as buffers of the saved model
    assert "normalization" not in torch.load(path, weights_only=True)[METADATA_KEY]
    assert checkpoint.state_dict["model.input_normalizer.std"].tolist() == [2.0]
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(checkpoint.build_model()(x), net.eval()(x), rtol=0, atol=0)  # the network alone
    predictor = checkpoint.build_predictor()
    assert type(predictor) is NormalizedOperator and not predictor.training
    torch.testing.assert_close(predictor(x), model(x), rtol=0, atol=0)


def test_write_refuses_a_bare_network_for_a_wrapped_kind(tmp_path):
    net = _fno()
    with pytest.raises(ValueError, match="NormalizedOperator"):
        write_checkpoint(tmp_path / "m.ckpt", _metadata(net), net.state_dict())


def test_statistics_are_checked_by_shape_and_value(tmp_path):
    net = _fno()
    state = _wrapped(net).state_dict()
    wide = {**state, "input_normalizer.mean": torch.zeros(3), "input_normalizer.std": torch.ones(3)}
    path = write_checkpoint(tmp_path / "wide.ckpt", _metadata(net), wide)
    with pytest.raises(CheckpointError, match="'input_normalizer.mean' has shape"):
        read_checkpoint(path).build_predictor()
    for name, value in (("target_normalizer.std", torch.tensor([float("nan")])), ("input_normalizer.std", torch.tensor([-1.0]))):
        path = write_checkpoint(tmp_path / "bad.ckpt", _metadata(net), {**state, name: value})
        message = f"buffer '{name}' holds NaN or infinite values" if name.startswith("target") else \
            "input standard deviations must not be negative"
        with pytest.raises(CheckpointError, match=message):  # each case its own reason, not either one
            read_checkpoint(path).build_predictor()
    missing = {k: v for k, v in state.items() if not k.startswith("target_normalizer")}
    path = write_checkpoint(tmp_path / "missing.ckpt", _metadata(net), missing)
    with pytest.raises(CheckpointError, match=re.escape("missing ['target_normalizer.mean', 'target_normalizer.std']")):
        read_checkpoint(path).build_predictor()


def _v2_operator_file(path, net, model: NormalizedOperator, **task_buffers) -> None:
    """What the format-2 operator task wrote: the network under ``net.``, the statistics as metadata lists
    (which the readers used) and again as the task's buffers."""
    meta = _metadata(net).to_dict()
    meta["format_version"] = 2
    meta["normalization"] = {
        "input": {"mean": model.input_normalizer.mean.tolist(), "std": model.input_normalizer.std.tolist()},
        "target": {"mean": model.target_normalizer.mean.tolist(), "std": model.target_normalizer.std.tolist()},
    }
    state = {"net." + k: v for k, v in net.state_dict().items()}
    for name in ("input_normalizer", "target_normalizer"):
        for stat in ("mean", "std"):
            state[f"{name}.{stat}"] = getattr(getattr(model, name), stat).clone()
    state.update(task_buffers)
    torch.save({"state_dict": state, METADATA_KEY: meta, "epoch": 1}, path)


def test_format_2_files_migrate_to_the_format_3_layout(tmp_path):
    net = _fno()
    model = _wrapped(net).eval()
    path = tmp_path / "v2.ckpt"
    _v2_operator_file(path, net, model)
    raw = torch.load(path, weights_only=True)
    migrated = migrate_v2(raw, path)
    assert raw[METADATA_KEY]["format_version"] == 2 and "input_normalizer.mean" in raw["state_dict"]  # not modified
    assert migrated[METADATA_KEY]["format_version"] == 3 and "normalization" not in migrated[METADATA_KEY]
    # the network moved under model.net., the statistics became the saved model's buffers, the task's copies went
    assert set(migrated["state_dict"]) == {"model." + k for k in model.state_dict()}
    checkpoint = read_checkpoint(path)
    assert checkpoint.metadata.format_version == FORMAT_VERSION
    for key, value in model.state_dict().items():
        assert torch.equal(checkpoint.state_dict["model." + key], value), key
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(checkpoint.build_predictor()(x), model(x), rtol=0, atol=0)
    # the readers of format 2 used the metadata lists: they win over the task's buffers
    other = tmp_path / "v2_other.ckpt"
    _v2_operator_file(other, net, model, **{"input_normalizer.mean": torch.tensor([99.0])})
    assert read_checkpoint(other).state_dict["model.input_normalizer.mean"].tolist() == [1.0]
    # an operator file of format 2 without its statistics cannot be used
    raw[METADATA_KEY]["normalization"] = {"input": raw[METADATA_KEY]["normalization"]["input"]}
    torch.save(raw, tmp_path / "no_target.ckpt")
    with pytest.raises(CheckpointError, match="lacks the target normalization"):
        read_checkpoint(tmp_path / "no_target.ckpt")


def test_format_2_rollout_files_migrate_with_their_weight_average(tmp_path):
    torch.manual_seed(0)
    net = PDERefiner(1, 1, n_params=2, num_refinement_steps=1, hidden_channels=4, channel_multipliers=[1, 2],
                     norm_groups=2, cond_channels=8)
    average = PDERefiner(**net.init_kwargs)
    meta = CheckpointMetadata(kind="rollout", model=ClassSpec.from_dict(net.init_config(), "model"),
                              conditioning={"names": ["dt", "dx"]}).to_dict()
    meta.update(format_version=2, conditioning={"names": ["dt", "dx"], "scale": [0.8, 0.25]},
                normalization={"input": {"mean": [0.5], "std": [2.0]}, "target": {"mean": [0.5], "std": [2.0]}})
    state = {"net." + k: v for k, v in net.state_dict().items()}
    state.update({"ema.module." + k: v for k, v in average.state_dict().items()})
    state.update({"ema.n_averaged": torch.tensor(3), "state_normalizer.mean": torch.tensor([0.5]),
                  "state_normalizer.std": torch.tensor([2.0]), "param_scale": torch.tensor([0.8, 0.25])})
    torch.save({"state_dict": state, METADATA_KEY: meta}, tmp_path / "v2.ckpt")
    checkpoint = read_checkpoint(tmp_path / "v2.ckpt")
    assert checkpoint.metadata.conditioning == {"names": ["dt", "dx"]}
    assert torch.equal(checkpoint.state_dict["model.param_scale"], torch.tensor([0.8, 0.25]))
    assert "param_scale" not in checkpoint.state_dict and "ema.n_averaged" in checkpoint.state_dict
    predictor = checkpoint.build_predictor()
    assert type(predictor) is NormalizedStepper
    for key, value in average.state_dict().items():  # the readers predict with the average
        assert torch.equal(predictor.net.state_dict()[key], value), key
    for key, value in net.state_dict().items():  # the trained network stays where it was saved
        assert torch.equal(checkpoint.network_state()[key], value), key
    assert predictor.state_normalizer.std.tolist() == [2.0]


def test_lightning_restores_a_format_2_file_in_the_format_3_layout():
    """Resuming or testing from a format-2 training checkpoint: the task's ``on_load_checkpoint`` migrates it
    before Lightning loads the ``state_dict`` (the golden file written by the format-2 task)."""
    from surrogates.tasks.operator_regression import OperatorRegression

    path = Path(__file__).parents[1] / "golden" / "v2" / "fno2d.ckpt"
    checkpoint = read_checkpoint(path)
    task = OperatorRegression.load_from_checkpoint(
        path, net=FNO(**checkpoint.metadata.model.kwargs), optimizer=torch.optim.Adam, map_location="cpu"
    ).eval()
    expected = checkpoint.build_predictor()
    for key, value in expected.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key
    x = torch.rand(2, 1, 16, 16) * 10
    with torch.no_grad():
        torch.testing.assert_close(task(x), expected(x), rtol=0, atol=0)


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
    net = _fno()
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), _wrapped(net).state_dict())
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "cut.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(tmp_path / "list.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not a surrogates checkpoint"):
        read_checkpoint(tmp_path / "foreign.ckpt")
    torch.save({"state_dict": {"w": [1.0]}, METADATA_KEY: _raw(net)}, tmp_path / "bad_state.ckpt")
    with pytest.raises(CheckpointError, match="must map names to tensors"):
        read_checkpoint(tmp_path / "bad_state.ckpt")


def test_weights_that_do_not_match_are_named(tmp_path):
    net = _fno()
    state = net.state_dict()
    key = next(iter(state))
    with pytest.raises(CheckpointError, match=f"weight '{key}' has shape"):
        build_model(net.init_config(), {**state, key: torch.zeros(3)}, tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        build_model(net.init_config(), {k: v for k, v in state.items() if k != key})


@pytest.mark.parametrize(
    ("key", "edit", "message"),
    [
        ("net.lifting.weight", lambda w: (w * 100).long(), "'net.lifting.weight' is torch.int64 in the file but torch.float32"),
        ("net.lifting.weight", lambda w: w > 0, "is torch.bool in the file"),
        ("net.lifting.weight", lambda w: torch.full(w.shape, 255, dtype=torch.uint8), "is torch.uint8 in the file"),
        ("net.lifting.weight", lambda w: torch.complex(w, torch.ones_like(w)), "is torch.complex64 in the file"),
        ("input_normalizer.std", lambda w: w.long(), "'input_normalizer.std' is torch.int64 in the file"),
        ("net.lifting.weight", lambda w: w.to_sparse(), "stored as a torch.sparse_coo tensor"),
    ],
)
def test_entries_of_another_dtype_are_refused_not_cast(tmp_path, key, edit, message):
    net = _fno()
    state = _wrapped(net).state_dict()
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), {**state, key: edit(state[key])})
    with pytest.raises(CheckpointError, match=message) as error:
        read_checkpoint(path).build_predictor()
    assert str(path) in str(error.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_of_another_trainer_precision_load_rounded_to_the_models_dtype(tmp_path, dtype):
    # trainer.precision=16-true / bf16-true / 64-true store every floating entry in that dtype
    net = _fno()
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in _wrapped(net).state_dict().items()}
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), state)
    loaded = read_checkpoint(path).build_predictor().state_dict()
    for key, value in state.items():  # the stored values, as the model's float32 holds them (exact from 16 bits)
        assert loaded[key].dtype == torch.float32 and torch.equal(loaded[key], value.to(torch.float32)), key


@pytest.mark.parametrize(("key", "value"), [("net.lifting.weight", float("nan")), ("net.spectral.0.weight", float("inf"))])
def test_weights_that_are_not_finite_are_refused(tmp_path, key, value):
    net = _fno()
    state = _wrapped(net).state_dict()
    bad = state[key].clone()
    bad.view(-1)[0] = value  # one entry is enough
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), {**state, key: bad})
    checkpoint = read_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"parameter '{key}' holds NaN or infinite values"):
        checkpoint.build_predictor()
    with pytest.raises(CheckpointError, match=f"parameter '{key[len('net.'):]}' holds NaN or infinite values"):
        checkpoint.build_model()


def test_huge_constructor_arguments_allocate_nothing():
    # width 10^6 and 64 modes would need terabytes; the meta-device skeleton shows the mismatch first.
    net = _fno()
    config = {"name": "fno", "kwargs": {**net.init_kwargs, "width": 1_000_000, "modes": [64, 64]}}
    with pytest.raises(CheckpointError, match="has shape"):
        build_model(config, net.state_dict())


def test_arguments_that_do_not_fit_the_constructor_are_refused():
    net = _fno()
    with pytest.raises(CheckpointError, match="do not fit FNO"):
        build_model({"name": "fno", "kwargs": {**net.init_kwargs, "command": "rm -rf /"}}, net.state_dict())
    with pytest.raises(CheckpointError, match="cannot build FNO"):
        build_model({"name": "fno", "kwargs": {**net.init_kwargs, "dim": 7}}, net.state_dict())


# -- archives and entries ---------------------------------------------------------------------------
def _valid_file(path: Path) -> Path:
    net = _fno()
    return write_checkpoint(path, _metadata(net), _wrapped(net).state_dict())


def test_legacy_torch_files_are_refused(tmp_path):
    """torch's format before 1.6 has no checksums: a changed byte would load as other weights."""
    legacy = tmp_path / "legacy.ckpt"
    torch.save(torch.load(_valid_file(tmp_path / "m.ckpt"), weights_only=True), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not a zip archive") as error:
        read_checkpoint(legacy)
    assert str(legacy) in str(error.value)


def test_a_folder_or_a_dataset_given_as_checkpoint_says_what_it_is(tmp_path):
    """ckpt=<run>/checkpoints or ckpt=<split>.h5: the message names what was found, not 'does not exist' or torch's legacy format"""
    import h5py

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    _valid_file(folder / "best.ckpt")
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint file; it holds \['best.ckpt'\]"):
        read_checkpoint(folder)
    with h5py.File(tmp_path / "test.h5", "w") as f:
        f["u"] = np.zeros(3)
    with pytest.raises(CheckpointError, match=r"an HDF5 file \(a dataset split\?\), not a torch checkpoint"):
        read_checkpoint(tmp_path / "test.h5")


def test_compressed_members_are_refused_before_anything_is_inflated(tmp_path, monkeypatch):
    path = _valid_file(tmp_path / "m.ckpt")
    deflated = tmp_path / "deflated.ckpt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    inflated = []
    monkeypatch.setattr(zipfile.ZipFile, "testzip", lambda self: inflated.append("testzip"))
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: inflated.append("torch.load"))
    with pytest.raises(CheckpointError, match="is compressed"):
        read_checkpoint(deflated)
    assert not inflated


def _declare_size(path: Path, name: str, size: int) -> None:
    """Edit the central-directory record of member ``name``: its uncompressed size (offset 24) becomes ``size``."""
    data = bytearray(path.read_bytes())
    position = data.find(b"PK\x01\x02")
    while data[position + 46 : position + 46 + len(name)] != name.encode():
        position = data.find(b"PK\x01\x02", position + 4)
    struct.pack_into("<I", data, position + 24, size)
    path.write_bytes(bytes(data))


def test_members_declaring_more_than_the_file_holds_are_refused(tmp_path):
    path = _valid_file(tmp_path / "m.ckpt")
    with zipfile.ZipFile(path) as archive:
        name = next(info.filename for info in archive.infolist() if info.filename.endswith("data.pkl"))
    _declare_size(path, name, 0xFFFF_FFF0)
    with pytest.raises(CheckpointError, match=r"members declare \d+ bytes, more than the file's"):
        read_checkpoint(path)


def test_entries_no_reader_uses_are_refused(tmp_path):
    path = _valid_file(tmp_path / "m.ckpt")
    contents = torch.load(path, weights_only=True)
    contents["state_dict"]["junk"] = torch.zeros(3)
    torch.save(contents, tmp_path / "junk.ckpt")
    checkpoint = read_checkpoint(tmp_path / "junk.ckpt")
    for build in (checkpoint.build_predictor, checkpoint.build_model):
        with pytest.raises(CheckpointError, match=r"entries no reader uses: \['junk'\]"):
            build()
    # a weight average is loaded in the trained network's place; the trained network must still match it
    contents = torch.load(path, weights_only=True)
    network = {key: value for key, value in contents["state_dict"].items() if key.startswith("model.net.")}
    contents["state_dict"].update({"ema.module." + key[len("model.net."):]: value for key, value in network.items()})
    contents["state_dict"]["model.net.lifting.weight"] = torch.zeros(2, 2)
    torch.save(contents, tmp_path / "average.ckpt")
    with pytest.raises(CheckpointError, match="'lifting.weight' has shape"):
        read_checkpoint(tmp_path / "average.ckpt").build_predictor()


# -- constructor arguments --------------------------------------------------------------------------
def _tanh_fno() -> FNO:
    torch.manual_seed(0)
    return FNO(in_channels=1, out_channels=1, dim=2, modes=3, width=4, projection_channels=4,
               activation="tanh", padding=0.25, grid="periodic")


@pytest.mark.parametrize("drop", [["activation"], ["padding"], ["grid"], ["activation", "padding", "grid"]])
def test_arguments_missing_from_the_file_are_refused_not_defaulted(tmp_path, drop):
    net = _tanh_fno()
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), _wrapped(net).state_dict())
    contents = torch.load(path, weights_only=True)
    for key in drop:
        del contents[METADATA_KEY]["model"]["kwargs"][key]
    torch.save(contents, path)
    checkpoint = read_checkpoint(path)
    with pytest.raises(CheckpointError, match=re.escape(f"the model arguments lack {drop!r} of FNO")):
        checkpoint.build_predictor()
    with pytest.raises(CheckpointError, match="lack"):
        checkpoint.build_model()


def test_arguments_added_after_a_file_was_written_take_the_value_it_was_built_with(tmp_path):
    """FNO files written before ``lifting_channels``, ``channel_mlp_expansion``, ``norm`` and ``skip`` existed
    (the golden files of every format) read with the values they were built with, explicitly."""
    net = _fno()
    model = _wrapped(net).eval()
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), model.state_dict())
    contents = torch.load(path, weights_only=True)
    for key in ("lifting_channels", "channel_mlp_expansion", "norm", "skip"):
        del contents[METADATA_KEY]["model"]["kwargs"][key]
    torch.save(contents, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.metadata.model.kwargs == net.init_kwargs
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(checkpoint.build_predictor()(x), model(x), rtol=0, atol=0)


def test_a_dcdm_file_written_before_its_options_loads_with_the_values_it_was_built_with(tmp_path):
    from surrogates.solvers.dcdm.network import DCDMNet, load

    torch.manual_seed(0)
    net = DCDMNet(width=4, blocks=1, coarsest=3)
    path = net.save(tmp_path / "dcdm.pt")
    contents = torch.load(path, weights_only=True)
    kwargs = contents[METADATA_KEY]["model"]["kwargs"]
    for key in ("coarse_couplings", "coarse_gain", "structure", "init", "scaling"):  # added after the first files
        del kwargs[key]
    kwargs_without_width = {k: v for k, v in kwargs.items() if k != "width"}
    torch.save(contents, path)
    assert load(path).init_kwargs == net.init_kwargs
    contents[METADATA_KEY]["model"]["kwargs"] = kwargs_without_width  # an argument it always had: refused
    torch.save(contents, path)
    with pytest.raises(CheckpointError, match=r"lack \['width'\] of DCDMNet"):
        load(path)


def test_problem_arguments_missing_from_the_file_are_refused():
    from surrogates.checkpoint import construct
    from surrogates.pdes.physics import Helmholtz2D

    with pytest.raises(CheckpointError, match=r"the problem arguments lack \['k'\] of Helmholtz2D"):
        construct(Helmholtz2D, {"a1": 1.0, "a2": 4.0}, "problem")
    assert construct(Helmholtz2D, {"a1": 1.0, "a2": 4.0, "k": 2.0}, "problem") == Helmholtz2D(k=2.0)


def _refiner_file(path: Path, **changes) -> Path:
    """A tiny PDE-Refiner rollout file whose stored arguments are then changed."""
    torch.manual_seed(0)
    net = PDERefiner(1, 1, n_params=2, num_refinement_steps=3, hidden_channels=4, channel_multipliers=[1, 2],
                     norm_groups=2, cond_channels=8)
    meta = CheckpointMetadata(kind="rollout", model=ClassSpec.from_dict(net.init_config(), "model"),
                              conditioning={"names": ["dt", "dx"]})
    write_checkpoint(path, meta, NormalizedStepper(net, Normalizer.from_stats([0.1], [1.5]), torch.tensor([0.8, 0.25])).state_dict())
    contents = torch.load(path, weights_only=True)
    contents[METADATA_KEY]["model"]["kwargs"].update(changes)
    torch.save(contents, path)
    return path


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("padding", float("nan"), "padding must be a finite number"),
        ("padding", float("inf"), "padding must be a finite number"),
        ("padding", 1e12, r"padding must be in \[0, 1\]"),  # would pad an 8x8 input to 8e12 points a side
        ("padding", 200.0, r"padding must be in \[0, 1\]"),
    ],
)
def test_fno_arguments_out_of_range_are_refused_at_load(tmp_path, name, value, message):
    net = _fno()
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), _wrapped(net).state_dict())
    contents = torch.load(path, weights_only=True)
    contents[METADATA_KEY]["model"]["kwargs"][name] = value
    torch.save(contents, path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path).build_predictor()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -100.0])
def test_refiner_embedding_scale_out_of_range_is_refused_at_load(tmp_path, value):
    path = _refiner_file(tmp_path / "r.ckpt", param_embedding_scale=value)
    with pytest.raises(CheckpointError, match="param_embedding_scale must be"):
        read_checkpoint(path).build_predictor()


# -- what the arguments may make the loader build ---------------------------------------------------
def test_a_layer_count_out_of_proportion_to_the_weights_is_refused_while_building_the_skeleton(tmp_path):
    """``n_layers`` fixes no weight's shape: the meta skeleton would grow with it (10**30: without end)
    before the comparison; the constructors bound it, and the skeleton's registrations are counted.
    (Modest counts, so that the test stays cheap even against a loader without the limits.)"""
    net = _fno()
    state = _wrapped(net).state_dict()
    path = write_checkpoint(tmp_path / "m.ckpt", _metadata(net), state)
    contents = torch.load(path, weights_only=True)
    limit = 4 * len(state) + 256
    for n_layers, message in ((2000, r"n_layers must be in \[0, 1024\]"), (1000, f"more than {limit} parameters")):
        contents[METADATA_KEY]["model"]["kwargs"]["n_layers"] = n_layers
        torch.save(contents, path)
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(path).build_predictor()
    torch.nn.ModuleList(torch.nn.Linear(1, 1) for _ in range(1000))  # the count ended with the refused build


def test_a_depth_without_a_class_bound_is_refused_by_the_registration_count():
    from surrogates.models.mlp import MLP

    net = MLP(in_channels=2, width=4, depth=1)
    config = {"name": "mlp", "kwargs": {**net.init_kwargs, "depth": 2000}}  # 10**9 would be a list of 10**9 layers
    with pytest.raises(CheckpointError, match="parameters, buffers and submodules"):
        build_model(config, net.state_dict(), kind="pointwise")


def test_the_registration_count_ignores_other_threads():
    import threading

    from surrogates.checkpoint.registration_limit import registration_limit

    built = []
    with registration_limit(0, 0, "m.ckpt"):
        thread = threading.Thread(target=lambda: built.append(torch.nn.Linear(2, 2)))
        thread.start()
        thread.join()
        with pytest.raises(CheckpointError, match="more than 0 parameters"):
            torch.nn.Linear(2, 2)
    assert len(built) == 1  # another thread's model was built and not counted
    torch.nn.Linear(2, 2)  # and after the block nothing counts


class _Tabled(OperatorModel):
    """A test model with a non-persistent buffer of ``size`` elements derived from its argument."""

    built = 0

    def __init__(self, size: int = 1):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.register_buffer("table", torch.zeros(size), persistent=False)
        _Tabled.built += self.weight.device.type != "meta"


def test_derived_buffers_larger_than_the_file_are_refused_before_they_are_allocated():
    try:
        register_model(_Tabled, "tabled")
        state = {"weight": torch.zeros(2)}
        assert build_model({"name": "tabled", "kwargs": {"size": 1000}}, state).table.numel() == 1000
        _Tabled.built = 0
        with pytest.raises(CheckpointError, match=r"derive buffers of 2097152 elements \(largest 'table'"):
            build_model({"name": "tabled", "kwargs": {"size": 2**21}}, state)
        assert _Tabled.built == 0  # refused from the meta skeleton
    finally:
        _MODELS._extra.pop("tabled", None)


def test_refinement_steps_are_bounded(tmp_path):
    """``num_refinement_steps`` sizes the noise schedule (K + 1 values) and runs K + 1 network calls per step."""
    path = _refiner_file(tmp_path / "r.ckpt", num_refinement_steps=5000)  # 5 * 10**7: 1.2 GB of noise levels
    with pytest.raises(CheckpointError, match=r"num_refinement_steps must be in \[0, 1000\]"):
        read_checkpoint(path).build_predictor()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda meta: meta["problem"]["kwargs"].update(a1=float("nan")), "a1 must be a finite number"),
        (lambda meta: meta["data_schema"].update(eval_resolution=30000), "makes a grid of 900000000 points"),
    ],
)
def test_pointwise_files_with_unusable_problems_or_grids_are_refused_at_load(tmp_path, edit, message):
    """The golden PINN file edited: a NaN wave number gave rel_l2 = nan in metrics.json; eval_resolution 30000
    made surrogates-evaluate allocate a 30000 x 30000 reference grid (6.7 GiB)."""
    from surrogates.serve.rollout import load_surrogate

    contents = torch.load(Path(__file__).parents[1] / "golden" / "v3" / "pinn.ckpt", weights_only=True)
    edit(contents[METADATA_KEY])
    torch.save(contents, tmp_path / "pinn.ckpt")
    with pytest.raises(CheckpointError, match=message):
        load_surrogate(tmp_path / "pinn.ckpt")


# -- registry ---------------------------------------------------------------------------------------
def test_registry_lists_the_package_models():
    assert set(registered_models()) >= {"fno", "mgno", "unet", "pde_refiner", "pig", "mlp", "hc_moe"}
    for name, cls in registered_models().items():
        assert cls.__module__.startswith("surrogates.models.") or name not in {"fno", "mgno"}


def test_a_subclass_is_never_rebuilt_as_its_parent(tmp_path):
    class WiderFNO(FNO):
        def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 4, extra: int = 0):
            super().__init__(in_channels, out_channels, dim=2, modes=3, width=width, projection_channels=4)

    net = WiderFNO()
    assert net.init_config()["name"] == "widerfno"
    with pytest.raises(CheckpointError, match="unknown model 'widerfno'"):
        build_model(net.init_config(), net.state_dict())
    try:
        register_model(WiderFNO)  # a decision made in code, not by a file
        rebuilt = build_model(net.init_config(), net.state_dict())
        assert type(rebuilt) is WiderFNO
    finally:
        _MODELS._extra.pop("widerfno", None)
    with pytest.raises(TypeError, match="only subclasses of OperatorModel"):
        register_model(torch.nn.Linear, "linear")
