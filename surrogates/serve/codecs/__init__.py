"""Request and response bodies: JSON arrays <-> numpy, NetCDF bytes <-> xarray.

One concept per module:

- :mod:`~surrogates.serve.codecs.media_types`: a request's Content-Type read as JSON or NetCDF;
- :mod:`~surrogates.serve.codecs.json_bodies`: JSON requests and answers;
- :mod:`~surrogates.serve.codecs.body_limits`: the limits of decoding a body (header counts, deadline);
- :mod:`~surrogates.serve.codecs.netcdf_variable`: what a NetCDF header says about one variable;
- :mod:`~surrogates.serve.codecs.netcdf3_header`: classic NetCDF-3 headers parsed from the bytes;
- :mod:`~surrogates.serve.codecs.netcdf_body`: a NetCDF body opened (its header, its variables through xarray);
- :mod:`~surrogates.serve.codecs.netcdf_reading`: the model's inputs read from a NetCDF body;
- :mod:`~surrogates.serve.codecs.netcdf_writing`: NetCDF answers.

Every decoding error is a :class:`~surrogates.serve.errors.ServiceError` whose message names the
variable, the shape or the byte-level problem, so that a client can fix its request:

- malformed JSON or NetCDF bytes: 400;
- bodies beyond the service's limits (values, decoded bytes, variables, attributes): 413, checked from
  a NetCDF body's header before its data is read;
- well-formed bodies with wrong content (unknown or missing variables, ragged or non-numeric arrays,
  wrong dims, too many HDF5 chunks): 422;
- a body still decoding at the request's deadline: 504.

Values travel as float32 (the models' dtype). In JSON, a float32 is written as the shortest decimal
that reads back as the same float64, which converts back to the same float32: JSON answers are
exact, bit for bit.
"""

from surrogates.serve.codecs.body_limits import CHUNK_BOOKKEEPING, MAX_ATTRIBUTES, MAX_CHUNKS, MAX_VARIABLES, check_deadline
from surrogates.serve.codecs.json_bodies import (
    ITEMWISE_VALUES,
    decode_json_request,
    encode_json,
    encode_json_answer,
    json_array,
    parse_json_request,
    release_nested,
)
from surrogates.serve.codecs.media_types import JSON_MEDIA_TYPE, NETCDF_MEDIA_TYPE, NETCDF_MEDIA_TYPES, body_kind
from surrogates.serve.codecs.netcdf3_header import MAX_CLASSIC_DIMS, classic_header
from surrogates.serve.codecs.netcdf_body import (
    DECODING,
    HDF5_SIGNATURE,
    NETCDF3_SIGNATURES,
    NetcdfBody,
    NetcdfHeader,
    netcdf_engine,
)
from surrogates.serve.codecs.netcdf_reading import read_netcdf
from surrogates.serve.codecs.netcdf_variable import NetcdfVariable
from surrogates.serve.codecs.netcdf_writing import writable_attrs, write_netcdf

__all__ = [
    "CHUNK_BOOKKEEPING",
    "DECODING",
    "HDF5_SIGNATURE",
    "ITEMWISE_VALUES",
    "JSON_MEDIA_TYPE",
    "MAX_ATTRIBUTES",
    "MAX_CHUNKS",
    "MAX_CLASSIC_DIMS",
    "MAX_VARIABLES",
    "NETCDF3_SIGNATURES",
    "NETCDF_MEDIA_TYPE",
    "NETCDF_MEDIA_TYPES",
    "NetcdfBody",
    "NetcdfHeader",
    "NetcdfVariable",
    "body_kind",
    "check_deadline",
    "classic_header",
    "decode_json_request",
    "encode_json",
    "encode_json_answer",
    "json_array",
    "netcdf_engine",
    "parse_json_request",
    "read_netcdf",
    "release_nested",
    "writable_attrs",
    "write_netcdf",
]
