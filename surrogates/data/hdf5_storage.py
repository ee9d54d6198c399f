"""Where an HDF5 file keeps its data: refusing files whose data live in other files.

HDF5 lets a file borrow data from elsewhere, and h5py (hence h5netcdf and xarray) reads through it
without a word:

- an *external link* names an object of another HDF5 file (``f["u"] = h5py.ExternalLink("test.h5", "/u")``);
- *external raw storage* keeps a dataset's bytes in other, raw files (``create_dataset(..., external=[...])``);
- a *virtual dataset* maps its values from datasets of other (or the same) files.

A dataset file read through any of them is not what its bytes and checksum say: a training split whose ``u``
maps the test split's, an imported source whose values come from a file the recorded SHA-256 does not cover,
a request body whose input is a file of the server. The package writes none of them, so every reader refuses
them: :func:`find_stored_elsewhere` walks a file's links from the header (no data is read, no other file is
opened) and :func:`check_stored_here` raises the caller's error, naming the file and the variable;
:func:`checked_header` does it in the same walk that collects the header facts the memory checks of
:mod:`surrogates.data.read_limits` need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surrogates.data.read_limits import StoredArray, stored_array

__all__ = [
    "StoredElsewhere", "check_stored_here", "checked_header", "dataset_stored_elsewhere", "find_stored_elsewhere",
    "netcdf_view",
]


_PHRASES = {  # kind -> (with the target, without it)
    "external link": ("is an external link to {target}", "is an external link to another file"),
    "external raw storage": ("keeps its values in other files (external raw storage: {target})",
                             "keeps its values in other files (external raw storage)"),
    "virtual dataset": ("is a virtual dataset mapped from {target}", "is a virtual dataset (mapped from other datasets)"),
    "user-defined link": ("is a user-defined link", "is a user-defined link"),
}


@dataclass(frozen=True)
class StoredElsewhere:
    """An object of a file whose data live in another file.

    Attributes
    ----------
    name
        Its path in the file, without the leading ``/`` (``"u"``, ``"0000/data"``).
    kind
        ``"external link"``, ``"external raw storage"``, ``"virtual dataset"`` or ``"user-defined link"``.
    target
        The other file(s) it names (for local messages; the service leaves them out of its answers).
    """

    name: str
    kind: str
    target: str

    def describe(self, with_target: bool = True) -> str:
        """One line: what ``name`` is and why it is refused."""
        with_text, without = _PHRASES[self.kind]
        what = with_text.format(target=self.target) if with_target and self.target else without
        return (
            f"variable {self.name!r} {what}: the package reads data only from the file itself "
            "(store the values in it, e.g. by copying them with h5py or xarray)"
        )


def dataset_stored_elsewhere(dataset: Any, name: str | None = None) -> StoredElsewhere | None:
    """How an h5py dataset keeps its values outside its file (external raw storage, virtual), or ``None``.

    Reads the dataset's creation properties only (its header), never its data.
    """
    from h5py import h5d

    plist = dataset.id.get_create_plist()
    label = (name if name is not None else str(dataset.name or "")).lstrip("/")
    count = plist.get_external_count()
    if count:
        files = [_text(plist.get_external(i)[0]) for i in range(count)]
        return StoredElsewhere(label, "external raw storage", ", ".join(files))
    if plist.get_layout() == h5d.VIRTUAL:
        sources = [
            f"{_text(plist.get_virtual_filename(i))}:{_text(plist.get_virtual_dsetname(i))}"
            for i in range(plist.get_virtual_count())
        ]
        return StoredElsewhere(label, "virtual dataset", ", ".join(sources))
    return None


def find_stored_elsewhere(
    handle: Any, each_dataset: Callable[[str, Any], None] | None = None
) -> StoredElsewhere | None:
    """The first object of an open h5py file (or group) whose data live elsewhere, or ``None``.

    Every link below ``handle`` is visited once (HDF5's link iteration, which never follows soft or
    external links): an external or user-defined link is refused as such, soft links point inside the file
    (their targets are visited through their hard links), and every dataset behind a hard link is checked
    with :func:`dataset_stored_elsewhere`. Only headers are read; no other file is opened.

    ``each_dataset(name, dataset)``, when given, is called with every dataset found stored in the file
    (e.g. to collect what its header says while it is open: one walk for both).
    """
    import h5py
    from h5py import h5i, h5l, h5o

    def visit(name: bytes | str, info: Any) -> StoredElsewhere | None:
        label = _text(name)
        if info.type == h5l.TYPE_SOFT:
            return None
        if info.type != h5l.TYPE_HARD:
            link = handle.get(label, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                return StoredElsewhere(label, "external link", f"{link.filename}:{link.path}")
            return StoredElsewhere(label, "user-defined link", "")
        obj = h5o.open(handle.id, _bytes(name))
        if h5i.get_type(obj) != h5i.DATASET:
            return None
        dataset = h5py.Dataset(obj)
        found = dataset_stored_elsewhere(dataset, label)
        if found is None and each_dataset is not None:
            each_dataset(label, dataset)
        return found

    return handle.id.links.visit(visit, info=True) or None


def check_stored_here(handle: Any, path: str | Path, error: Callable[[Path, str], Exception]) -> None:
    """Raise ``error(path, problem)`` when the open file ``handle`` (from ``path``) keeps data elsewhere
    (:func:`find_stored_elsewhere`); ``problem`` names the variable and the other file.

    ``error`` is the caller's error type, e.g. :class:`~surrogates.data.schema.DatasetFileError` (called
    with the path and the problem) or a function making an ``ImportDataError``.
    """
    found = find_stored_elsewhere(handle)
    if found is not None:
        raise error(Path(path), found.describe())


def checked_header(handle: Any, path: str | Path, error: Callable[[Path, str], Exception]) -> dict[str, StoredArray]:
    """One walk of an open h5py file: refuse data stored elsewhere (:func:`check_stored_here`) and return what
    the header says about every dataset (:func:`~surrogates.data.read_limits.stored_array`), by path in the file."""
    arrays: dict[str, StoredArray] = {}
    found = find_stored_elsewhere(handle, lambda name, dataset: arrays.__setitem__(name, stored_array(dataset, name)))
    if found is not None:
        raise error(Path(path), found.describe())
    return arrays


def netcdf_view(raw: Any, **options: Any) -> Any:
    """An ``h5netcdf.File`` (read-only, ``options`` passed on) over the open h5py file ``raw``.

    The attribute h5netcdf's constructor reads first is read here: a corrupt one then fails in this call, not
    inside that constructor, which would leave a half-built ``File`` whose finalizer raises."""
    import h5netcdf

    raw.attrs.get("_nc3_strict")
    return h5netcdf.File(raw, "r", **options)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
