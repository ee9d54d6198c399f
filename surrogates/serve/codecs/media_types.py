"""Which kind of body a request sends: its Content-Type read as JSON or NetCDF (415 otherwise)."""

from __future__ import annotations

from surrogates.serve.errors import ServiceError

JSON_MEDIA_TYPE = "application/json"
NETCDF_MEDIA_TYPE = "application/x-netcdf"
NETCDF_MEDIA_TYPES = (NETCDF_MEDIA_TYPE, "application/netcdf", "application/x-hdf5", "application/x-hdf")
"""Content types read as NetCDF (NetCDF-4/HDF5 or classic NetCDF-3, told apart by the file signature)."""


def body_kind(content_type: str | None) -> str:
    """``"json"`` or ``"netcdf"`` from a Content-Type header (no header: JSON); 415 otherwise."""
    media = (content_type or JSON_MEDIA_TYPE).split(";")[0].strip().lower()
    if media == JSON_MEDIA_TYPE or media.endswith("+json"):
        return "json"
    if media in NETCDF_MEDIA_TYPES:
        return "netcdf"
    raise ServiceError(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {media!r}: send {JSON_MEDIA_TYPE!r} (JSON arrays) or {NETCDF_MEDIA_TYPE!r} (a NetCDF file)",
    )
