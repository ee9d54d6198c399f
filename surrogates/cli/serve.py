"""`surrogates-serve models_dir=...`: every checkpoint in a folder, and classical solvers, over HTTP.

The entry point only composes ``conf/serve.yaml``, builds the registry and starts uvicorn on
``host:port`` (loopback by default). See ``docs/serving.md``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import hydra
from omegaconf import DictConfig

from surrogates.arguments import check_count
from surrogates.cli import CONFIG_PATH
from surrogates.cli.errors import report_user_errors


def build_app(cfg: DictConfig):
    """The FastAPI app of a composed ``serve`` config (registry loaded, nothing started)."""
    from surrogates.serve.app import ServeSettings, create_app
    from surrogates.serve.registry import Registry

    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
    registry = Registry.from_folder(cfg.models_dir, device=cfg.device, solvers=cfg.get("solvers"))
    settings = ServeSettings(
        micro_batching=bool(cfg.micro_batching),
        max_batch_size=int(cfg.max_batch_size),
        max_wait_ms=float(cfg.max_wait_ms),
        max_body_bytes=int(cfg.max_body_bytes),
        max_elements=int(cfg.max_elements),
        max_steps=int(cfg.max_steps),
        max_output_elements=int(cfg.get("max_output_elements", 1 << 24)),
        max_decoded_bytes=None if cfg.get("max_decoded_bytes") is None else int(cfg.max_decoded_bytes),
        max_chunks=int(cfg.get("max_chunks", 1 << 16)),
        max_variables=int(cfg.get("max_variables", 1000)),
        max_attributes=int(cfg.get("max_attributes", 1000)),
        request_timeout_s=None if cfg.get("request_timeout_s") is None else float(cfg.request_timeout_s),
        rollout_slice_ms=float(cfg.get("rollout_slice_ms", 100.0)),
        max_pending_requests=None if cfg.get("max_pending_requests") is None else int(cfg.max_pending_requests),
        max_queue_ms=None if cfg.get("max_queue_ms") is None else float(cfg.max_queue_ms),
        retry_after_s=float(cfg.get("retry_after_s", 1.0)),
        api_token=api_token(cfg.get("token_env")),
    )
    return create_app(registry, settings)


def check_can_listen(host: str, port: Any) -> int:
    """``port`` as an int once ``host:port`` was bound and released; ``ValueError`` saying why it cannot be.

    Checked before the models load: uvicorn would report a port in use (a second ``surrogates-serve``)
    only after the registry was built and "serving ... on" was printed, and exit with status 3.
    """
    port = check_count("port", port, 0, 65535)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ValueError(f"host={host!r} is not an address this machine can listen on: {error.strerror}") from error
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed socket's TIME_WAIT passes
        try:
            probe.bind(address)
        except OSError as error:
            raise ValueError(
                f"cannot listen on {host}:{port}: {error.strerror} (another surrogates-serve? choose another port=...)"
            ) from error
    return port


def check_device(device: object) -> None:
    """A ``device`` torch cannot read (``device=gpuu``) is the user's typo: refused before any model loads (each
    model would otherwise be listed as unavailable, and the service start with none). ``auto`` (CUDA when
    available, which the registry resolves) is taken."""
    import torch

    if str(device) == "auto":
        return
    try:
        torch.device(str(device))
    except RuntimeError as error:
        raise ValueError(f"device={device!r} is not a torch device; use auto, cpu, cuda or cuda:<index>") from error


def prepare(cfg: DictConfig):
    """The app of ``cfg`` once its address is free (:func:`check_can_listen`), then :func:`build_app`."""
    check_device(cfg.device)
    check_can_listen(cfg.host, cfg.port)
    return build_app(cfg)


def api_token(token_env: str | None) -> str | None:
    """The bearer token from the environment variable named ``token_env``; None when unnamed, unset or empty."""
    return (os.environ.get(token_env) or None) if token_env else None


def warn_if_exposed(host: str, token: str | None) -> None:
    """Log a warning when the service binds beyond this machine without a token: anyone who reaches the
    address can use every model."""
    from surrogates.serve.auth import is_loopback

    if not token and not is_loopback(str(host)):
        logging.getLogger("surrogates.serve").warning(
            "binding to %s, which is not a loopback address, without a bearer token: anyone who reaches it can run "
            "every model. Set a token in the environment variable named by token_env, or put a proxy with "
            "authentication in front",
            host,
        )


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="serve")
def main(cfg: DictConfig) -> None:
    import uvicorn

    logging.getLogger("surrogates.serve").setLevel(str(cfg.log_level).upper())
    app = report_user_errors("surrogates-serve", prepare, cfg)  # e.g. a models_dir that does not exist, a port in use
    registry = app.state.registry
    warn_if_exposed(cfg.host, app.state.settings.api_token)
    print(f"serving {len(registry.ready)} model(s) on http://{cfg.host}:{cfg.port} (OpenAPI: /docs, /openapi.json)")
    for entry in registry.unavailable:
        print(f"  unavailable: {entry.name}: {entry.error}")
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level=str(cfg.log_level).lower())


if __name__ == "__main__":
    main()
