"""HDF5 files opened lazily by the process that reads them (each DataLoader worker opens its own).

h5py handles must not cross a fork: a worker reading through its parent's handle shares the parent's file
state and can read wrong bytes. :class:`WorkerFiles` opens a file on its first read in a process, drops
handles inherited through fork or pickling, keeps at most :data:`MAX_OPEN_FILES` open (least recently used
closed first: a split of thousands of shards must not exhaust file descriptors), and checks on every open
that the file still keeps its data inside (:func:`~surrogates.data.hdf5_storage.check_stored_here`), since it
may have been replaced since it was inspected.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py

from surrogates.data.hdf5_storage import check_stored_here
from surrogates.data.schema import DatasetFileError

__all__ = ["MAX_OPEN_FILES", "WorkerFiles"]

MAX_OPEN_FILES = 64
"""Files a reader keeps open per process (least recently used closed first)."""


class WorkerFiles:
    """The datasets ``names`` of each of ``files``, opened in the reading process on first use.

    Parameters
    ----------
    files
        The files, indexed ``0 .. len(files) - 1``.
    names
        The datasets to look up in every file (looked up once per open: a lookup by name costs several times
        more than reading a small sample).
    """

    def __init__(self, files: Sequence[Path], names: Iterable[str]):
        self.files = list(files)
        self.names = sorted(set(names))
        self._handles: OrderedDict[int, tuple[h5py.File, dict[str, h5py.Dataset]]] = OrderedDict()
        self._pid: int | None = None

    def variables(self, k: int) -> dict[str, h5py.Dataset]:
        """The datasets of file ``k`` by name, opened in this process if not yet.

        Raises
        ------
        DatasetFileError
            The file now reads data from other files (external, virtual or linked datasets).
        OSError
            The file cannot be opened.
        """
        if self._pid != os.getpid():  # handles inherited through fork belong to the parent: open our own
            self._handles = OrderedDict()
            self._pid = os.getpid()
        entry = self._handles.get(k)
        if entry is not None:
            self._handles.move_to_end(k)
            return entry[1]
        handle = h5py.File(self.files[k], "r")
        try:
            check_stored_here(handle, self.files[k], DatasetFileError)
            entry = (handle, {name: handle[name] for name in self.names})
        except BaseException:
            handle.close()
            raise
        self._handles[k] = entry
        while len(self._handles) > MAX_OPEN_FILES:
            self._handles.popitem(last=False)[1][0].close()
        return entry[1]

    @property
    def open_files(self) -> list[int]:
        """Indices of the files open in this process, least recently used first."""
        return list(self._handles) if self._pid == os.getpid() else []

    def close(self) -> None:
        """Close the handles this process opened (they are reopened on the next read)."""
        if self._pid == os.getpid():
            for handle, _ in self._handles.values():
                handle.close()
        self._handles = OrderedDict()
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        # a pickled copy (a spawned worker) opens its own handles
        return {**self.__dict__, "_handles": OrderedDict(), "_pid": None}
