"""Names of files still being written, and the cleanup of those left by processes that died.

A dataset file is written as ``<name>.tmp-<host>-<pid>`` in its final folder and renamed when complete
(:mod:`surrogates.data.writer`, :mod:`surrogates.data.publishing`). The host and process id in the name let a
later run on the same machine tell a dead process's leftover from a file another job is still writing.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path


def host_name() -> str:
    """This machine's name as it appears in temporary file names (characters other than ``[A-Za-z0-9_.]`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def temporary_path(path: str | Path) -> Path:
    """The name a file is written under before it is complete: ``<name>.tmp-<host>-<pid>`` in the same folder."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{host_name()}-{os.getpid()}")


_TEMPORARY = re.compile(r"^(?P<final>.+)\.tmp-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)$")


def temporary_owner(path: str | Path) -> tuple[str, int] | None:
    """``(host, pid)`` of a temporary file name made by :func:`temporary_path`; ``None`` for other names."""
    match = _TEMPORARY.match(Path(path).name)
    return (match["host"], int(match["pid"])) if match else None


def _process_is_dead(pid: int) -> bool:
    """Whether no process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, owned by someone else
        return False
    return False


def stale_temporaries(folder: str | Path) -> Iterator[Path]:
    """Temporary files in ``folder`` left by dead processes of this host.

    Temporary files of other hosts (the folder may be shared over a network file system), of live
    processes, and in the old ``<name>.tmp-<pid>`` form (host unknown) are never listed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    host = host_name()
    for candidate in sorted(folder.iterdir()):
        owner = temporary_owner(candidate)
        if owner is None or owner[0] != host or owner[1] == os.getpid():
            continue
        if candidate.is_file() and _process_is_dead(owner[1]):
            yield candidate


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete :func:`stale_temporaries` of ``folder``; returns what was removed."""
    removed = []
    for path in list(stale_temporaries(folder)):
        try:
            path.unlink()
        except FileNotFoundError:  # another job cleaned it first
            continue
        removed.append(path)
    return removed
