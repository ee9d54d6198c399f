"""A budget of parameters, buffers and submodules for the ``meta`` skeleton a model file's arguments build.

A file's constructor arguments decide how large a model is (``n_layers=10**30``); before anything is
allocated, :func:`~surrogates.checkpoint.building.build_model` builds the model on the ``meta`` device inside
:func:`registration_limit`, which refuses it once it registers more than the file's weights can need.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from surrogates.errors import CheckpointError


@dataclass
class _Limit:
    """The registration budget of one skeleton build (see :func:`registration_limit`)."""

    limit: int
    entries: int
    path: Any
    count: int = 0


_ACTIVE = threading.local()
"""``_ACTIVE.limit``: the :class:`_Limit` of the skeleton this thread is building, or absent."""

_HOOKS_LOCK = threading.Lock()
_HOOKS: list[Any] = []


def _count_registration(*_: Any) -> None:
    """torch's registration hook: counts against the calling thread's :class:`_Limit`, if it has one."""
    limit = getattr(_ACTIVE, "limit", None)
    if limit is None:
        return
    limit.count += 1
    if limit.count > limit.limit:
        raise CheckpointError(
            limit.path, f"the stored arguments build a model of more than {limit.limit} parameters, buffers and "
            f"submodules for a file of {limit.entries} tensors (a layer count out of proportion to the weights)"
        )


def _install_hooks() -> None:
    """Register :func:`_count_registration` as torch's global parameter, buffer and submodule registration
    hook, once per process."""
    with _HOOKS_LOCK:
        if _HOOKS:
            return
        module = torch.nn.modules.module
        _HOOKS.extend([
            module.register_module_parameter_registration_hook(_count_registration),
            module.register_module_buffer_registration_hook(_count_registration),
            module.register_module_module_registration_hook(_count_registration),
        ])


@contextmanager
def registration_limit(limit: int, entries: int, path: Any) -> Iterator[None]:
    """Count the parameters, buffers and submodules this thread registers inside the block; raise
    :class:`CheckpointError` at registration ``limit + 1``. The count ends with the block (a ``finally``).

    torch's registration hooks are global (torch has none per thread). So the counting hook is installed once
    and stays, and what it counts against is thread-local: it counts only the registrations of a thread
    inside this block, and for every other registration (another thread's model, this thread's outside the
    block) it returns at once, costing one Python call. Adding and removing the hooks around every build
    instead would change torch's hook dicts while another thread may be iterating over them in its own
    registrations (``RuntimeError: dictionary changed size during iteration`` in a thread that merely builds
    a module: the service's model threads, a second loader); installed once, they never change again.
    """
    _install_hooks()
    previous = getattr(_ACTIVE, "limit", None)
    _ACTIVE.limit = _Limit(limit, entries, path)
    try:
        yield
    finally:
        _ACTIVE.limit = previous
