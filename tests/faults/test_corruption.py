"""Bytes changed or cut at seeded positions in dataset files, checkpoints and request bodies.

Every damaged file is either refused by every reader with one error naming it (``DatasetFileError``,
``CheckpointError``), or reads back exactly as the intact file (the change landed in bytes no reader
uses, such as an attribute's text or zip metadata): nothing trains or predicts on changed numbers
without a word. Damaged request bodies get a 4xx, never a 5xx, and the server keeps serving.

Dataset files carry a Fletcher-32 checksum per chunk and NaN as the fill value
(``surrogates/data/writer.py``); checkpoints are zip archives whose CRC-32s the reader verifies
(``surrogates/checkpoint/archive.py``). Without these, most changed bytes of the data region loaded silently.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
import torch
import xarray as xr

from surrogates import Surrogate
from surrogates.data.dataset import FieldDataset
from surrogates.data.schema import DatasetFileError, inspect_file
from surrogates.errors import CheckpointError
from surrogates.serve.app import ServeSettings, create_app
from surrogates.serve.registry import Registry
from tests.cli.conftest import compose_cfg  # noqa: F401  (fixture)
from tests.serve.conftest import LiveServer, save_constructed_checkpoint

SEED = 20261206
FLIPS, DATA_FLIPS, CUTS = 60, 20, 10  # per file kind: anywhere, inside the numbers, truncations
NETCDF = {"content-type": "application/x-netcdf"}

# Counts per case kind, printed for docs/reliability.md.
COUNTS: dict[str, Counter] = {}


def _flipped(data: bytes, position: int, bit: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 1 << bit
    return bytes(out)


def _cases(data: bytes, rng: np.random.Generator, regions: list[tuple[int, int]]) -> list[tuple[str, bytes]]:
    """(label, damaged bytes): FLIPS single-bit flips anywhere, DATA_FLIPS inside ``regions``, CUTS truncations."""
    cases = []
    for _ in range(FLIPS):
        position, bit = int(rng.integers(0, len(data))), int(rng.integers(0, 8))
        cases.append((f"flip@{position}.{bit}", _flipped(data, position, bit)))
    sizes = np.array([end - start for start, end in regions])
    for _ in range(DATA_FLIPS):
        start, end = regions[int(rng.choice(len(regions), p=sizes / sizes.sum()))]
        position, bit = int(rng.integers(start, end)), int(rng.integers(0, 8))
        cases.append((f"data-flip@{position}.{bit}", _flipped(data, position, bit)))
    for _ in range(CUTS):
        size = int(rng.integers(0, len(data)))
        cases.append((f"cut@{size}", data[:size]))
    return cases


def _one_line(error: Exception, path: Path) -> str:
    message = str(error)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message


# -- dataset files --------------------------------------------------------------------------------------
def _h5_arrays(path: Path) -> dict[str, bytes]:
    with h5py.File(path, "r") as f:
        return {name: f[name][()].tobytes() for name in f if isinstance(f[name], h5py.Dataset)}


def _chunk_regions(path: Path) -> list[tuple[int, int]]:
    """Byte ranges of the stored chunks of every variable (the numbers themselves)."""
    regions = []
    with h5py.File(path, "r") as f:
        for name in f:
            dataset = f[name]
            if not isinstance(dataset, h5py.Dataset) or dataset.chunks is None:
                continue
            for i in range(dataset.id.get_num_chunks()):
                chunk = dataset.id.get_chunk_info(i)
                regions.append((chunk.byte_offset, chunk.byte_offset + chunk.size))
    return regions


def test_a_damaged_dataset_file_is_refused_or_reads_back_unchanged(darcy_dir, tmp_path):
    source = darcy_dir / "train.h5"
    data, intact = source.read_bytes(), _h5_arrays(source)
    counts = COUNTS.setdefault("dataset", Counter())
    for i, (label, damaged) in enumerate(_cases(data, np.random.default_rng([SEED, 1]), _chunk_regions(source))):
        path = tmp_path / f"{i:03d}" / "train.h5"
        path.parent.mkdir()
        path.write_bytes(damaged)
        try:
            inspect_file(path)
        except DatasetFileError as error:
            _one_line(error, path)
            with pytest.raises(DatasetFileError) as again:  # the reader training uses refuses alike
                FieldDataset([path], ["a"], ["u"])
            _one_line(again.value, path)
            counts["refused"] += 1
            continue
        # accepted: then every number must be the intact file's (the change hit bytes no reader uses)
        assert not label.startswith(("data-flip", "cut")), f"{label}: changed numbers were accepted"
        assert _h5_arrays(path) == intact, f"{label}: accepted with other numbers"
        dataset = FieldDataset([path], ["a"], ["u"])
        assert np.array_equal(dataset[5]["x"].numpy(), FieldDataset([source], ["a"], ["u"])[5]["x"].numpy())
        counts["accepted, numbers unchanged"] += 1
    print(f"\ndataset file: {sum(counts.values())} cases: {dict(counts)}")
    assert counts["refused"] >= DATA_FLIPS + CUTS


def test_training_refuses_a_split_with_a_changed_number_before_the_first_step(darcy_dir, tmp_path, compose_cfg):
    from surrogates.cli.train import train

    folder = tmp_path / "darcy"
    shutil.copytree(darcy_dir, folder)
    start, end = _chunk_regions(folder / "train.h5")[-1]  # the last sample's chunk of the last variable
    (folder / "train.h5").write_bytes(_flipped((folder / "train.h5").read_bytes(), (start + end) // 2, 3))
    cfg = compose_cfg("train", [
        "experiment=darcy_fno_demo", f"data.data_dir={folder}", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", f"paths.output_dir={tmp_path / 'run'}",
    ])
    with pytest.raises(DatasetFileError) as error:
        train(cfg)
    assert "train.h5" in _one_line(error.value, folder / "train.h5")
    assert not list((tmp_path / "run").rglob("*.ckpt"))  # no model came out of it


# -- checkpoints ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from surrogates.models.fno import FNO

    torch.manual_seed(0)
    net = FNO(in_channels=1, out_channels=1, dim=2, modes=3, width=8, projection_channels=8)
    root = tmp_path_factory.mktemp("intact")
    return save_constructed_checkpoint(root / "fno.ckpt", net, ["a"], ["u"], [8, 8], pde="darcy")


def _zip_regions(path: Path) -> list[tuple[int, int]]:
    """Byte ranges of the stored tensors (``data/<n>`` entries) of a torch zip file."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        regions = []
        for info in archive.infolist():
            if "/data/" in info.filename:  # the local header's name and extra lengths give where the bytes start
                name_length, extra_length = np.frombuffer(data, "<u2", 2, info.header_offset + 26)
                start = info.header_offset + 30 + int(name_length) + int(extra_length)
                regions.append((start, start + info.compress_size))
        return regions


def _state(surrogate: Surrogate) -> dict[str, bytes]:
    return {name: t.detach().cpu().numpy().tobytes() for name, t in surrogate.model.state_dict().items()}


@pytest.fixture(scope="module")
def damaged_checkpoints(checkpoint, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A models folder: the intact checkpoint as ``intact.ckpt`` and one damaged copy per case (name -> label)."""
    root = tmp_path_factory.mktemp("models")
    shutil.copy(checkpoint, root / "intact.ckpt")
    data = checkpoint.read_bytes()
    labels = {}
    for i, (label, damaged) in enumerate(_cases(data, np.random.default_rng([SEED, 2]), _zip_regions(checkpoint))):
        (root / "damaged").mkdir(exist_ok=True)
        (root / "damaged" / f"{i:03d}.ckpt").write_bytes(damaged)
        labels[f"damaged/{i:03d}"] = label
    return root, labels


def test_a_damaged_checkpoint_is_refused_or_loads_unchanged(checkpoint, damaged_checkpoints):
    root, labels = damaged_checkpoints
    intact = Surrogate.load(checkpoint)
    x = np.random.default_rng(0).uniform(3, 12, (3, 8, 8)).astype(np.float32)
    counts = COUNTS.setdefault("checkpoint", Counter())
    for name, label in labels.items():
        path = root / f"{name}.ckpt"
        try:
            loaded = Surrogate.load(path)
        except CheckpointError as error:
            _one_line(error, path)
            counts["refused"] += 1
            continue
        assert not label.startswith(("data-flip", "cut")), f"{label}: changed weights were accepted"
        assert _state(loaded) == _state(intact), f"{label}: loaded other weights"
        assert {**loaded.metadata, "checkpoint": None} == {**intact.metadata, "checkpoint": None}, label
        assert np.array_equal(loaded.predict(x), intact.predict(x)), label
        counts["accepted, weights unchanged"] += 1
    print(f"\ncheckpoint: {sum(counts.values())} cases: {dict(counts)}")
    assert counts["refused"] >= DATA_FLIPS + CUTS


@pytest.fixture(scope="module")
def server(damaged_checkpoints) -> Iterator[LiveServer]:
    root, _ = damaged_checkpoints
    registry = Registry.from_folder(root)  # must not raise, whatever the files hold
    settings = ServeSettings(micro_batching=True, max_batch_size=8, max_wait_ms=5.0, max_body_bytes=1 << 20)
    with LiveServer(create_app(registry, settings)) as live:
        yield live


def test_the_service_lists_damaged_checkpoints_as_unavailable_and_serves_the_rest(checkpoint, damaged_checkpoints, server):
    root, labels = damaged_checkpoints
    x = np.random.default_rng(1).uniform(3, 12, (2, 8, 8)).astype(np.float32)
    expected = Surrogate.load(checkpoint).predict(x)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "intact" in health["ready"]
        statuses = Counter()
        for name, label in labels.items():
            response = client.post(f"/v1/models/{name}/predict", json={"inputs": {"a": x.tolist()}})
            statuses[response.status_code] += 1
            if name in health["unavailable"]:
                assert health["unavailable"][name] == "cannot read checkpoint", (label, health["unavailable"][name])
                assert response.status_code == 503 and response.json()["code"] == "model_unavailable", label
            else:  # loaded: the bytes it changed were unused, so it answers as the intact file does
                assert name in health["ready"] and response.status_code == 200, label
                assert np.array_equal(np.asarray(response.json()["outputs"]["u"], np.float32), expected), label
        intact = client.post("/v1/models/intact/predict", json={"inputs": {"a": x.tolist()}})
        assert intact.status_code == 200
        assert np.array_equal(np.asarray(intact.json()["outputs"]["u"], np.float32), expected)
    print(f"\nservice: {len(labels)} damaged checkpoints, answers {dict(statuses)}")


# -- request bodies -------------------------------------------------------------------------------------
def _bodies() -> dict[str, bytes]:
    a = np.random.default_rng(2).uniform(3, 12, (2, 8, 8)).astype(np.float32)
    ds = xr.Dataset({"a": (("sample", "x", "y"), a)}, coords={"x": np.linspace(0, 1, 8), "y": np.linspace(0, 1, 8)})
    return {
        "netcdf4": bytes(ds.to_netcdf(engine="h5netcdf")),
        "netcdf4-gzip": bytes(ds.to_netcdf(engine="h5netcdf", encoding={"a": {"zlib": True, "complevel": 4}})),
        "netcdf3": bytes(ds.to_netcdf(engine="scipy")),
    }


def _u(response: httpx.Response) -> np.ndarray:
    return xr.open_dataset(io.BytesIO(response.content))["u"].values


# a damaged body is refused without leaving a half-built reader whose finalizer raises (printed to the log)
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("kind", ["netcdf4", "netcdf4-gzip", "netcdf3"])
def test_damaged_netcdf_bodies_get_4xx_never_5xx(server, kind):
    body = _bodies()[kind]
    counts = COUNTS.setdefault(f"body {kind}", Counter())
    with httpx.Client(base_url=server.url, timeout=60) as client:
        reference = client.post("/v1/models/intact/predict", content=body, headers=NETCDF)
        assert reference.status_code == 200, reference.text
        for label, damaged in _cases(body, np.random.default_rng([SEED, 3, len(body)]), [(len(body) // 2, len(body))]):
            response = client.post("/v1/models/intact/predict", content=damaged, headers=NETCDF)
            counts[response.status_code] += 1
            assert response.status_code < 500, (label, response.text)
            if response.status_code != 200:
                assert response.json()["code"] and response.json()["detail"], label
            else:  # a changed number is the client's data; the answer must still be a well-formed file
                assert _u(response).shape == (2, 8, 8), label
        after = client.post("/v1/models/intact/predict", content=body, headers=NETCDF)
        assert after.status_code == 200  # still serving, and the same numbers (HDF5 headers hold times)
        assert _u(after).tobytes() == _u(reference).tobytes()
        assert client.get("/health").status_code == 200
    print(f"\nbody {kind}: {sum(counts.values())} cases, statuses {dict(sorted(counts.items()))}")
