"""A models folder (trained, constructed, corrupt and foreign files) and live servers on loopback ports."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from surrogates import __version__
from surrogates.checkpoint import METADATA_KEY, CheckpointMetadata, ClassSpec, write_checkpoint
from surrogates.models.normalized import NormalizedOperator, NormalizedStepper
from surrogates.models.pde_refiner import ROLLOUT_KIND, PDERefiner
from surrogates.nn.normalization import Normalizer

DARCY_SOLVER = {"darcy-pcg": {"pde": {"_target_": "surrogates.pdes.darcy.Darcy", "resolution": 16}}}


def folder_client(models: Path):
    """fastapi's ``TestClient`` of the service over the checkpoints in ``models``, default settings (a context
    manager: the app starts and stops with the block)."""
    from fastapi.testclient import TestClient

    from surrogates.serve.app import ServeSettings, create_app
    from surrogates.serve.registry import Registry

    return TestClient(create_app(Registry.from_folder(models), ServeSettings()))


def save_constructed_checkpoint(
    path: Path, net, inputs: list[str], targets: list[str], spatial_shape: list[int], pde: str = "test", **meta
) -> Path:
    """A checkpoint in the training format (the saved model under ``model.``, the ``surrogates`` metadata) for an
    untrained net, with input statistics (0.5, 2.0) and target statistics (0.1, 0.5) per channel."""
    c_in, c_out = len(inputs), len(targets)
    spatial_dims = ["x", "y"][: len(spatial_shape)]
    metadata = CheckpointMetadata(
        kind="operator",
        model=ClassSpec.from_dict(net.init_config(), "model"),
        data_schema={
            "pde": pde,
            "inputs": inputs,
            "targets": targets,
            "input_time": None,
            "target_time": None,
            "spatial_dims": spatial_dims,
            "spatial_shape": spatial_shape,
            "variables": {name: ["sample", *spatial_dims] for name in {*inputs, *targets}},
        },
        package_version=__version__,
        **meta,
    )
    model = NormalizedOperator(
        net, Normalizer.from_stats([0.5] * c_in, [2.0] * c_in), Normalizer.from_stats([0.1] * c_out, [0.5] * c_out)
    )
    return write_checkpoint(path, metadata, model.state_dict())


def save_rollout_checkpoint(path: Path, refinement_steps: int) -> Path:
    """An (untrained) one-step model in the format of the autoregressive task, conditioned on dt and dx."""
    torch.manual_seed(refinement_steps)
    net = PDERefiner(1, 1, n_params=2, num_refinement_steps=refinement_steps, hidden_channels=8, channel_multipliers=[1, 2])
    metadata = CheckpointMetadata(
        kind=ROLLOUT_KIND,
        model=ClassSpec.from_dict(net.init_config(), "model"),
        conditioning={"names": ["dt", "dx"]},
        data_schema={"kind": "trajectory", "pde": "ks", "state": ["u"], "conditioning": ["dt", "dx"], "spatial_dims": ["x"]},
        package_version=__version__,
    )
    model = NormalizedStepper(net, Normalizer.from_stats([0.1], [1.5]), torch.tensor([0.8, 0.25]))
    return write_checkpoint(path, metadata, model.state_dict())


@pytest.fixture(scope="session")
def models_dir(darcy_checkpoint, tmp_path_factory) -> Path:
    """``fno-darcy`` (trained, 16x16), ``rollout/fno-heat`` (inputs = targets), ``rollout/ks-refiner``
    (PDE-Refiner, 1D, conditioned on dt and dx), ``fixed/fno-darcy``
    (records a fixed grid), ``rb/thermal`` (reduced basis), and broken files."""
    from surrogates.models.fno import FNO

    root = tmp_path_factory.mktemp("models")
    shutil.copy(darcy_checkpoint, root / "fno-darcy.ckpt")
    torch.manual_seed(0)
    heat = FNO(in_channels=1, out_channels=1, dim=2, modes=3, width=8, projection_channels=8)
    save_constructed_checkpoint(root / "rollout" / "fno-heat.ckpt", heat, ["u"], ["u"], [12, 12], pde="heat")
    save_rollout_checkpoint(root / "rollout" / "ks-refiner.ckpt", 2)  # a one-step model conditioned on dt, dx
    fixed = torch.load(darcy_checkpoint, map_location="cpu", weights_only=True)
    fixed[METADATA_KEY]["serving"] = {"resolution": "fixed"}
    (root / "fixed").mkdir()
    torch.save(fixed, root / "fixed" / "fno-darcy.ckpt")
    (root / "corrupt.ckpt").write_bytes(darcy_checkpoint.read_bytes()[:2000])
    torch.save({"state_dict": {}}, root / "foreign.ckpt")
    (root / "notes.txt").write_text("not a model")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "skipped.ckpt").write_bytes(b"never read")
    _reduced_model(root / "rb" / "thermal.rb.h5")
    return root


def _reduced_model(path: Path) -> Path:
    from surrogates.pdes.thermal_block import ThermalBlock
    from surrogates.solvers.reduced_basis import RBEIM, RBReductor, weak_greedy

    problem = ThermalBlock(resolution=9)
    solver = RBEIM(max_basis_size=4, eim_training_size=30, eim_check_size=10, training_set="random", training_size=20)
    reductor = RBReductor(solver.build_system(problem))
    weak_greedy(reductor, solver.greedy_training_set(problem), 4, rtol=None)
    return reductor.reduce({"pde": "thermal_block"}).save(path)


@pytest.fixture(scope="session")
def registry(models_dir):
    from surrogates.serve.registry import Registry

    return Registry.from_folder(models_dir, solvers=DARCY_SOLVER)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn running an app in a background thread on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _serve(registry, **settings) -> Iterator[LiveServer]:
    from surrogates.serve.app import ServeSettings, create_app

    with LiveServer(create_app(registry, ServeSettings(**settings))) as server:
        yield server


@pytest.fixture(scope="session")
def server(registry) -> Iterator[LiveServer]:
    """Micro-batching on; a small body limit so that 413 is cheap to provoke; room for 32 concurrent requests."""
    yield from _serve(registry, micro_batching=True, max_batch_size=8, max_wait_ms=20.0, max_body_bytes=1_000_000, max_steps=50,
                      max_pending_requests=32)


@pytest.fixture(scope="session")
def unbatched_server(registry) -> Iterator[LiveServer]:
    yield from _serve(registry, micro_batching=False)


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
