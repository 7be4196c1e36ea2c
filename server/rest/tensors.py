"""V2 REST tensors: JSON ``data`` and Triton's binary tensor extension, in and out.

A request body is a JSON header, optionally followed by the binary data of the inputs whose
``parameters.binary_data_size`` says how many bytes they take, in input order; the
``Inference-Header-Content-Length`` header gives the JSON's length. Binary data has the format of
gRPC's ``raw_input_contents`` (BYTES elements each preceded by a 4-byte little-endian length).
A reply puts an output in binary the same way when the request asks (``binary_data`` on the
output, or ``binary_data_output`` on the request), else in JSON ``data`` (a flat, row-major list).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from cnnserve import codec
from cnnserve.server import errors

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass
class RestInput:
    name: str
    datatype: str
    shape: list[int]
    data: Any = None  # the JSON elements, or None when binary
    binary: bytes | None = None
    # Where orjson read ``data``: the request's JSON text and the input's index in it, to read
    # again with the standard library when the values are refused (see decode).
    source: bytes | None = None
    index: int = 0


def parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], list[RestInput]]:
    """The request's JSON and its inputs (not yet decoded: their headers are checked first).

    orjson reads the JSON where it can; the standard library stays the reference. orjson refuses
    some of what the standard library reads (NaN and Infinity, UTF-16 and UTF-32) and reads an
    integer beyond 64 bits as a float: whatever orjson cannot read, or reads into a request that
    is refused, is read again by the standard library, so a client gets the same answer and the
    same words either way."""
    if header_length is None:
        json_part, rest = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise errors.InvalidArgument(f"{HEADER_LENGTH}: {header_length!r} is not an integer") from None
        if not 0 <= length <= len(body):
            raise errors.InvalidArgument(f"{HEADER_LENGTH}: {length} is outside the body's {len(body)} bytes")
        json_part, rest = body[:length], body[length:]
    try:
        return _inputs(orjson.loads(json_part), rest, json_part)
    except (orjson.JSONDecodeError, errors.InvalidArgument):
        pass
    try:
        document = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"failed to parse the request JSON: {exc}") from None
    return _inputs(document, rest, None)


def _inputs(document: Any, rest: bytes, source: bytes | None) -> tuple[dict[str, Any], list[RestInput]]:
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise errors.InvalidArgument("request JSON: expected an object with an 'inputs' array")
    inputs, offset = [], 0
    for i, tensor in enumerate(document["inputs"]):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise errors.InvalidArgument(f"{where}: expected an object with name, shape, datatype and data")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise errors.InvalidArgument(f"{where}: 'name' and 'datatype' must be strings")
        if not isinstance(shape, list) or any(not isinstance(d, int) or isinstance(d, bool) for d in shape):
            raise errors.InvalidArgument(f"input {name!r}: 'shape' must be a list of integers")
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            if "data" not in tensor:
                raise errors.InvalidArgument(f"input {name!r}: no 'data' and no binary_data_size parameter")
            inputs.append(RestInput(name, datatype, shape, data=tensor["data"], source=source, index=i))
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(rest):
            raise errors.InvalidArgument(
                f"input {name!r}: binary_data_size {size!r} does not fit the {len(rest) - offset} binary bytes left"
            )
        inputs.append(RestInput(name, datatype, shape, binary=rest[offset : offset + size]))
        offset += size
    if offset != len(rest):
        raise errors.InvalidArgument(f"request: {len(rest) - offset} binary bytes after the last binary input")
    return document, inputs


def decode(tensor: RestInput) -> np.ndarray:
    try:
        if tensor.binary is not None:
            return codec.decode_binary(tensor.name, tensor.datatype, tensor.shape, tensor.binary, "binary data")
        return codec.decode_values(tensor.name, tensor.datatype, tensor.shape, _flat(tensor), "data")
    except (codec.TensorError, errors.InvalidArgument) as exc:
        if tensor.source is None:
            raise errors.InvalidArgument(str(exc)) from None
    # Refused as orjson read it: the standard library's reading decides, and words any refusal.
    reference = json.loads(tensor.source)["inputs"][tensor.index]["data"]
    return decode(RestInput(tensor.name, tensor.datatype, tensor.shape, data=reference))


def _flat(tensor: RestInput) -> list[Any]:
    """JSON ``data``: a flat list, or nested lists of the tensor's shape, row-major."""
    data = tensor.data
    if not isinstance(data, list):
        raise errors.InvalidArgument(f"input {tensor.name!r}: 'data' must be a list")
    while data and all(isinstance(d, list) for d in data):
        data = [x for d in data for x in d]
    return data


def encode_reply(document: dict[str, Any], outputs: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """The reply body for ``(name, array, binary)`` outputs, and the JSON's length when binary
    data follows it (None: the body is all JSON)."""
    blobs: list[bytes] = []
    described = []
    for name, array, binary in outputs:
        datatype = codec.v2_datatype(array.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            _, raw = codec.encode_output(name, array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif datatype == "BYTES":
            tensor["data"] = [
                b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b) for b in array.reshape(-1)
            ]
        else:
            tensor["data"] = array.reshape(-1).tolist()
        described.append(tensor)
    header = json.dumps({**document, "outputs": described}).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
