"""Checks of a ``state_dict`` against the model it is loaded into: the same entries, each dense, of the same
shape and a dtype that loads without changing what a value means, and finite values.

Used by the model builders before and after loading (:mod:`surrogates.checkpoint.building`), by
:meth:`~surrogates.checkpoint.io.Checkpoint.check_entries` for a weight average, and by resuming
(:func:`check_state`), whose weights Lightning loads.
"""

from __future__ import annotations

from typing import Any

import torch

from surrogates.errors import CheckpointError


def compare_state(expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor], path: Any) -> None:
    """Every entry of ``expected`` (the model's ``state_dict``) is in ``stored`` with the same shape and dtype,
    as a dense tensor, and ``stored`` holds nothing else."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            path, f"weights do not match the model: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for key, value in expected.items():
        _compare_entry(key, value, stored[key], path)


def _compare_entry(key: str, expected: torch.Tensor, stored: torch.Tensor, path: Any) -> None:
    if stored.layout != torch.strided or stored.is_quantized or stored.is_meta:
        form = "a meta" if stored.is_meta else "a quantized" if stored.is_quantized else f"a {stored.layout}"
        raise CheckpointError(path, f"weight {key!r} is stored as {form} tensor, not a dense one")
    if tuple(expected.shape) != tuple(stored.shape):
        raise CheckpointError(
            path, f"weight {key!r} has shape {tuple(stored.shape)} in the file but {tuple(expected.shape)} in the model"
        )
    # load_state_dict would cast silently (complex to real drops the imaginary part, uint8 255 becomes 255.0, a
    # bool becomes 1.0). One real floating dtype for another is what a run of another trainer.precision stores
    # (16-true: float16, bf16-true: bfloat16, 64-true: float64): those values load, rounded to the model's dtype
    if not loadable_dtype(stored.dtype, expected.dtype):
        raise CheckpointError(path, f"weight {key!r} is {stored.dtype} in the file but {expected.dtype} in the model")


def loadable_dtype(stored: torch.dtype, expected: torch.dtype) -> bool:
    """Whether values stored as ``stored`` load into a tensor of ``expected``: the same dtype, or two real
    floating ones (a run of another ``trainer.precision``), never a cast that changes what a value means."""
    real = (stored.is_floating_point and not stored.is_complex) and (expected.is_floating_point and not expected.is_complex)
    return stored == expected or real


def check_state(expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor], path: Any = None) -> None:
    """Raise :class:`CheckpointError` unless ``stored`` has exactly the entries of ``expected`` (a module's
    ``state_dict``), each dense, of the same shape and dtype, and finite where floating: the checks the
    readers make before and after loading weights, for a ``state_dict`` that another loader (Lightning,
    when a run resumes) will load."""
    compare_state(expected, stored, path)
    for key, value in stored.items():
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            raise CheckpointError(path, f"weight {key!r} holds NaN or infinite values")


def check_finite(model: torch.nn.Module, path: Any) -> None:
    """Refuse a model whose floating parameters or buffers hold NaN or infinite values (naming the first)."""
    entries = [("parameter", name, value) for name, value in model.named_parameters()]
    entries += [("buffer", name, value) for name, value in model.named_buffers()]
    for what, name, value in entries:
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            raise CheckpointError(path, f"{what} {name!r} holds NaN or infinite values")
