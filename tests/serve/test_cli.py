"""`surrogates-serve`: the Hydra config composes, the app it builds serves, and the console script starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from omegaconf import OmegaConf

from tests.cli.conftest import compose_config
from tests.serve.conftest import LiveServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_defaults(tmp_path):
    cfg = compose_config("serve", [], tmp_path / "run")
    assert cfg.host == "127.0.0.1" and cfg.micro_batching is True
    assert cfg.solvers["darcy-pcg"].pde._target_ == "surrogates.pdes.darcy.Darcy"
    assert OmegaConf.to_container(cfg, resolve=True)["solvers"]["darcy-pcg"]["pde"]["resolution"] == cfg.resolution


def test_app_built_from_the_config_serves(models_dir, tmp_path):
    from surrogates.cli.serve import build_app

    cfg = compose_config(
        "serve", [f"models_dir={models_dir}", "resolution=16", "micro_batching=false", "max_body_bytes=1000"], tmp_path / "run"
    )
    app = build_app(cfg)
    assert app.state.settings.micro_batching is False and app.state.settings.max_body_bytes == 1000
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as client:
        health = client.get("/health").json()
        assert {"fno-darcy", "darcy-pcg"} <= set(health["ready"]) and "corrupt" in health["unavailable"]
        answer = client.post("/v1/models/darcy-pcg/predict", json={"inputs": {"a": [[3.0] * 5] * 5}})
        assert answer.status_code == 200 and len(answer.json()["outputs"]["u"]) == 5
        assert client.post("/v1/models/fno-darcy/predict", content=b" " * 2000).status_code == 413


def test_a_missing_models_dir_is_reported(tmp_path):
    from surrogates.cli.serve import build_app

    cfg = compose_config("serve", [f"models_dir={tmp_path / 'nope'}"], tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        build_app(cfg)


@pytest.mark.slow
def test_the_entry_point_starts_a_server(models_dir, tmp_path):
    port = free_port()
    command = [
        sys.executable, "-m", "surrogates.cli.serve", f"models_dir={models_dir}", f"port={port}",
        f"hydra.run.dir={tmp_path / 'run'}", "log_level=warning",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        assert "fno-darcy" in health["ready"] and "corrupt" in health["unavailable"]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_the_service_and_surrogate_import_without_lightning():
    code = (
        "import sys\n"
        "from surrogates import Surrogate\n"
        "import surrogates.serve.app, surrogates.serve.registry\n"
        "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules, 'Lightning was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    from surrogates.data import FieldDataModule, Normalizer, open_split  # the lazy exports still resolve
    from surrogates.data.datamodule import FieldDataModule as defined

    assert FieldDataModule is defined and callable(open_split) and Normalizer.__name__ == "Normalizer"


def test_the_config_sets_the_deadline_the_slices_and_the_token_from_the_environment(tmp_path, monkeypatch):
    from surrogates.cli.serve import build_app

    monkeypatch.setenv("SURROGATES_TEST_TOKEN", "from-the-environment")
    monkeypatch.delenv("SURROGATES_API_TOKEN", raising=False)
    (tmp_path / "models").mkdir()
    overrides = [f"models_dir={tmp_path / 'models'}", "solvers={}", "token_env=SURROGATES_TEST_TOKEN",
                 "request_timeout_s=2.5", "rollout_slice_ms=10"]
    settings = build_app(compose_config("serve", overrides, tmp_path / "run")).state.settings
    assert settings.api_token == "from-the-environment"
    assert settings.request_timeout_s == 2.5 and settings.rollout_slice_ms == 10.0
    defaults = build_app(compose_config("serve", overrides[:2], tmp_path / "run2")).state.settings
    assert defaults.request_timeout_s == 30.0 and defaults.api_token is None  # SURROGATES_API_TOKEN is unset


def test_a_port_in_use_is_refused_before_the_models_load(tmp_path, monkeypatch):
    """a second surrogates-serve on the same port: one line naming the address, not uvicorn's error after start-up"""
    import socket

    from surrogates.cli import serve

    def no_build(cfg):
        raise AssertionError("the models were loaded before the address was checked")

    monkeypatch.setattr(serve, "build_app", no_build)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = compose_config("serve", [f"models_dir={tmp_path}", f"port={port}"], tmp_path / "run")
        with pytest.raises(ValueError, match=rf"cannot listen on 127.0.0.1:{port}: .*choose another port="):
            serve.prepare(cfg)
    with pytest.raises(ValueError, match="port must be in"):
        serve.check_can_listen("127.0.0.1", 70000)
    assert serve.check_can_listen("127.0.0.1", free_port()) > 0


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_devices_the_registry_takes_pass_the_early_check(device):
    """``auto`` (CUDA when available) is the registry's to resolve: the early check must not refuse it."""
    from surrogates.cli import serve

    serve.check_device(device)


def test_a_device_torch_cannot_read_is_refused_naming_the_choices():
    from surrogates.cli import serve

    with pytest.raises(ValueError, match=r"^device='gpuu' is not a torch device; use auto, cpu, cuda or cuda:<index>$"):
        serve.check_device("gpuu")
