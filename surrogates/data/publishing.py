"""Publish the complete files of one dataset together: renames back to back, signals held until they are done.

The files were written and flushed under their temporary names first (:func:`~surrogates.data.writer.write_dataset`
with ``publish=False``, :meth:`~surrogates.data.streaming_writer.StreamingDatasetWriter.finish`), so ``overwrite=true``
keeps the previous dataset whole until the new one is.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class PartialPublishError(OSError):
    """A rename of :func:`publish_files` failed after others succeeded: the folder holds files of two datasets,
    which the readers refuse (their fingerprints differ) until a rerun publishes the rest."""


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs and deliver the first one after it (main thread only).

    Python runs signal handlers in the main thread between two bytecodes, whichever thread received the signal,
    so the handlers are swapped for one that only records the signal (masking it in this thread would not do:
    another thread may take it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def publish_files(staged: Sequence[tuple[Path, Path]]) -> None:
    """Rename complete temporary files onto their final names, back to back, then flush their folders.

    The files were written and flushed before (``write_dataset(..., publish=False)``,
    :meth:`~surrogates.data.streaming_writer.StreamingDatasetWriter.finish`), so only renames remain: the window in
    which the folder holds part of the new files beside the old ones is as short as the file system allows, and
    SIGINT / SIGTERM wait until it is over (:func:`signals_deferred`). A crash in that window (power loss, SIGKILL) leaves files of two datasets,
    which the readers refuse by their fingerprints.

    Parameters
    ----------
    staged
        ``(temporary, final)`` pairs, renamed in this order.

    Raises
    ------
    PartialPublishError
        When a rename fails after others succeeded (naming what was published and what was not); a failure of
        the first rename publishes nothing and raises the ``OSError`` itself. The temporaries not renamed are
        removed in both cases.
    """
    done: list[Path] = []
    with signals_deferred():
        for tmp, final in staged:
            try:
                os.replace(tmp, final)
            except OSError as error:
                for left, _ in staged[len(done):]:
                    left.unlink(missing_ok=True)
                if not done:
                    raise
                rest = ", ".join(final.name for _, final in staged[len(done):])
                raise PartialPublishError(
                    f"publishing stopped at {final.name} ({error}): {', '.join(p.name for p in done)} replaced, "
                    f"{rest} not; the folder mixes two datasets (readers refuse it): rerun the same command"
                ) from error
            done.append(final)
    for folder in sorted({final.parent for _, final in staged}):
        _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames) to disk, where the file system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the renames are then as durable as they make them
        pass
    finally:
        os.close(fd)
