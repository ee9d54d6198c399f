"""Load a torch file safely: the zip archive checked (stored members, sizes, CRC-32s) before
``torch.load(weights_only=True)`` reads anything.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from surrogates.errors import CheckpointError

__all__ = ["load_torch_file"]


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first bytes of an HDF5 file (at offset 0, as h5py and netCDF write them)."""


def load_torch_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU, as a dict; :class:`CheckpointError` on any failure.

    ``weights_only`` refuses every pickled global that is not a tensor or plain container, so a
    crafted file (``__reduce__`` payloads, omegaconf objects, modules) is refused before anything runs.
    """
    path = Path(path)
    if path.is_dir():  # ckpt=<run>/checkpoints: name the files it holds
        found = sorted(p.name for p in path.glob("*.ckpt"))[:8]
        raise CheckpointError(path, f"is a folder, not a checkpoint file; it holds {found or 'no .ckpt files'}")
    if not path.is_file():
        raise CheckpointError(path, "file does not exist")
    _check_archive(path)
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated, foreign or unsafe files
        reason = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            path, f"cannot read checkpoint: not a weights-only torch file (truncated, foreign, or holding objects "
            f"other than tensors and plain data): {reason}"
        ) from error
    if not isinstance(contents, dict):
        raise CheckpointError(path, f"holds a {type(contents).__name__}, not a checkpoint dict")
    return contents


def _check_archive(path: Path) -> None:
    """Refuse, before ``torch.load`` reads anything, what torch's reader would take on trust.

    - A file that is not a zip archive: torch's legacy format (before torch 1.6, or
      ``_use_new_zipfile_serialization=False``) carries no checksum, so a changed byte would load as
      other weights. Every file this package writes is a zip archive.
    - A compressed member: torch writes its members stored (uncompressed); a compressed one can inflate
      to far more than the file holds (a zip bomb), so it is refused before anything is inflated.
    - Members whose declared sizes add up to more than the file's size on disk.
    - A CRC-32 mismatch in any member (torch's reader does not check them).
    """
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:  # a dataset split, say: not torch's legacy format
                raise CheckpointError(path, "cannot read checkpoint: an HDF5 file (a dataset split?), not a torch checkpoint")
        raise CheckpointError(
            path, "cannot read checkpoint: not a zip archive (torch's legacy format, written before torch 1.6 or with "
            "_use_new_zipfile_serialization=False, has no checksums and is refused: load it with torch and save it again)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive.infolist(), path)
            damaged = archive.testzip()
    except CheckpointError:
        raise
    except Exception as error:  # zipfile raises BadZipFile, ValueError, EOFError, ... for damaged archives
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(path, f"cannot read checkpoint: damaged file ({reason})") from error
    if damaged is not None:
        raise CheckpointError(path, f"cannot read checkpoint: damaged file (CRC-32 mismatch in {damaged!r})")


def _check_members(members: list[zipfile.ZipInfo], path: Path) -> None:
    """Stored members only, declaring no more bytes than the file has (checked from the central directory)."""
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                path, f"cannot read checkpoint: member {member.filename!r} is compressed (torch stores its members "
                "uncompressed; a compressed member could inflate to any size)"
            )
    declared, size = sum(member.file_size for member in members), path.stat().st_size
    if declared > size:
        raise CheckpointError(
            path, f"cannot read checkpoint: its members declare {declared} bytes, more than the file's {size}"
        )
