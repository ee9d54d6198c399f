"""Saving and loading the solvers' learned networks through the package's one checkpoint format.

A learned solver network (the GNN preconditioner, the DCDM network) records its constructor
arguments in ``init_kwargs`` and is registered in :mod:`surrogates.checkpoint.registry`
(``_package_preconditioners``); its file is a checkpoint of kind ``"preconditioner"`` that names the
network by its registered name, so loading it never imports anything the file names.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["load_network", "load_network_metadata", "save_network"]


def save_network(model: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Save a registered solver network (kind ``"preconditioner"``) to ``path`` (parents created).

    Parameters
    ----------
    model
        A network class listed in the registry's ``_package_preconditioners``, with ``init_kwargs``.
    path
        Target file.
    metadata
        Plain values (how the network was trained), stored as the file's training record.

    Returns
    -------
    Path
        The file written.
    """
    from surrogates import __version__
    from surrogates.checkpoint import CheckpointMetadata, ClassSpec, write_checkpoint
    from surrogates.checkpoint.registry import preconditioner_name

    record = CheckpointMetadata(
        kind="preconditioner", model=ClassSpec(preconditioner_name(model), dict(model.init_kwargs)),
        training=dict(metadata or {}), package_version=__version__,
    )
    return write_checkpoint(path, record, model.state_dict())


def load_network(path: str | Path, map_location: str | torch.device = "cpu", expected: type | None = None) -> nn.Module:
    """Rebuild a network written by :func:`save_network`, in eval mode.

    Parameters
    ----------
    path
        The file.
    map_location
        Device of the rebuilt network.
    expected
        If given, the class the file must hold (a GNN file is refused where a DCDM network is wanted).

    Raises
    ------
    CheckpointError
        When the file is unreadable, not a solver-network file, holds another network, or its weights do not fit.
    """
    from surrogates.checkpoint import read_checkpoint
    from surrogates.errors import CheckpointError

    checkpoint = _require_network(read_checkpoint(path))
    model = checkpoint.build_model()
    if expected is not None and not isinstance(model, expected):
        raise CheckpointError(checkpoint.path, f"holds a {type(model).__name__}, not a {expected.__name__}")
    return model.to(map_location).eval()


def load_network_metadata(path: str | Path) -> dict:
    """The ``metadata`` dict stored by :func:`save_network` (``{}`` if none); ``CheckpointError`` for an invalid file."""
    from surrogates.checkpoint import read_checkpoint

    return dict(_require_network(read_checkpoint(path)).metadata.training)


def _require_network(checkpoint):
    from surrogates.errors import CheckpointError

    if checkpoint.kind != "preconditioner":
        raise CheckpointError(checkpoint.path, f"holds a {checkpoint.kind!r} model, not a learned solver network")
    return checkpoint
