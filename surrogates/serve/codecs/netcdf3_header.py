"""Classic NetCDF-3 headers (CDF-1, CDF-2) parsed from a request body's bytes, before scipy opens it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from surrogates.serve.codecs.body_limits import MAX_ATTRIBUTES, MAX_VARIABLES, check_count
from surrogates.serve.codecs.netcdf_variable import NetcdfVariable
from surrogates.serve.errors import bad_request

_CLASSIC_TYPES = {1: np.dtype(">i1"), 2: np.dtype("S1"), 3: np.dtype(">i2"), 4: np.dtype(">i4"), 5: np.dtype(">f4"), 6: np.dtype(">f8")}
_DIMENSIONS, _VARIABLES, _ATTRIBUTES = 0x0A, 0x0B, 0x0C
MAX_CLASSIC_DIMS = 1024  # NC_MAX_VAR_DIMS


def classic_header(
    body: bytes, max_variables: int = MAX_VARIABLES, max_attributes: int = MAX_ATTRIBUTES
) -> dict[str, NetcdfVariable]:
    """The variables of a classic NetCDF-3 body (CDF-1 or CDF-2), from its header alone, after checking that
    their data lie within the body without overlapping.

    scipy copies every variable's data when it opens a body: a header that points many variables at the same
    bytes would make a small body cost many times its size. With the data ranges checked, opening copies at
    most the body's length. Dimensions and variables are each limited to ``max_variables`` (413
    ``too_many_variables``), attributes all together to ``max_attributes`` (413 ``too_many_attributes``): scipy
    parses every one of them.

    Raises
    ------
    ServiceError
        400 ``malformed_netcdf`` for overlapping or out-of-body data; 413 ``too_many_variables``,
        ``too_many_attributes``.
    ValueError
        For a truncated or inconsistent header (the caller answers 400).
    """
    header = _ClassicCursor(body, max_attributes)
    offset = 8 if body[3:4] == b"\x02" else 4
    records = header.count()
    if records == 0xFFFFFFFF:
        raise ValueError("a streaming NetCDF-3 file (unknown number of records)")
    dims = [(header.name(), header.count()) for _ in range(header.list(_DIMENSIONS, max_variables, "dimensions"))]
    header.skip_attributes()
    variables, extents, record_begin, record_size = {}, [], None, 0
    for _ in range(header.list(_VARIABLES, max_variables, "variables")):
        name = header.name()
        ndims = header.count()
        if ndims > MAX_CLASSIC_DIMS:
            raise ValueError(f"variable {name!r} has {ndims} dims")
        ids = [header.count() for _ in range(ndims)]
        header.skip_attributes()
        dtype, vsize, begin = _CLASSIC_TYPES[header.count()], header.count(), header.unsigned(offset)
        names, sizes = [dims[i][0] for i in ids], [dims[i][1] for i in ids]
        if 0 in sizes[1:]:
            raise ValueError(f"variable {name!r}: the record dim is not its first dim")
        record = sizes[:1] == [0]
        shape = (records, *sizes[1:]) if record else tuple(sizes)
        variables[name] = NetcdfVariable(name, tuple(names), shape, dtype)
        if record:  # as scipy reads them: records x (the sum of their vsize) from the first one's begin
            record_begin = begin if record_begin is None else record_begin
            record_size += vsize
        else:
            extents.append((name, begin, math.prod(shape) * dtype.itemsize))
    if record_begin is not None:
        extents.append(("the record variables", record_begin, records * record_size))
    _check_extents(extents, len(body))
    return variables


def _check_extents(extents: Sequence[tuple[str, int, int]], size: int) -> None:
    """Refuse data beyond the body, and variables whose data overlap (400)."""
    previous = None
    for name, start, length in sorted((e for e in extents if e[2] > 0), key=lambda e: e[1]):
        if start + length > size:
            raise bad_request(
                "malformed_netcdf", f"the data of {_what(name)} lie beyond the end of the body (truncated or corrupt?)"
            )
        if previous is not None and start < previous[1] + previous[2]:
            raise bad_request(
                "malformed_netcdf",
                f"{_what(previous[0])} and {_what(name)} point at the same bytes of the body; each variable needs its own data",
            )
        previous = (name, start, length)


def _what(name: str) -> str:
    return name if name == "the record variables" else f"variable {name!r}"


class _ClassicCursor:
    """Big-endian reads from a classic NetCDF header, refusing (``ValueError``) reads beyond the body."""

    def __init__(self, body: bytes, max_attributes: int):
        self.body, self.at = memoryview(body), 4
        self.attributes, self.max_attributes = 0, max_attributes

    def take(self, n: int) -> memoryview:
        if n < 0 or self.at + n > len(self.body):
            raise ValueError("the NetCDF-3 header is truncated")
        self.at += n
        return self.body[self.at - n : self.at]

    def unsigned(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def count(self) -> int:
        return self.unsigned(4)

    def name(self) -> str:
        n = self.count()
        name = bytes(self.take(n)).decode("latin1")  # as scipy decodes names
        self.take(-n % 4)
        return name

    def list(self, tag: int, limit: int, what: str, setting: str = "max_variables") -> int:
        """The number of items of a list (dimensions, attributes, variables), at most ``limit`` (413 beyond)."""
        found, count = self.count(), self.count()
        if found not in (0, tag) or (found == 0 and count):
            raise ValueError(f"unexpected list tag {found:#x} in the NetCDF-3 header")
        check_count(count, limit, what, setting)
        return count

    def skip_attributes(self) -> None:
        """Past an attribute list, counting its attributes against ``max_attributes`` (413 beyond)."""
        count = self.list(_ATTRIBUTES, self.max_attributes, "attributes in one list", "max_attributes")
        self.attributes += count
        check_count(self.attributes, self.max_attributes, "attributes", "max_attributes")
        for _ in range(count):
            self.name()
            dtype, n = _CLASSIC_TYPES[self.count()], self.count()
            size = n * dtype.itemsize
            self.take(size + (-size % 4))
