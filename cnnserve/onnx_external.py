"""Which tensors of an ONNX file are stored as external data, and where: read from the file's
protobuf directly, without the onnx package (the exporter's dependency, not the server's). The
repository (:mod:`cnnserve.repository`) refuses a model whose external data lies outside its
folder."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

# Where an ONNX file (a protobuf ModelProto) can hold tensors, by message and field number (from
# onnx.proto; tests/cnnserve/test_onnx_external.py checks them against the onnx package). Read here
# without the onnx package, which is the exporter's dependency, not the server's.
_TENSOR_FIELDS: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "FunctionProto": {7: "NodeProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {
        5: "TensorProto",
        6: "GraphProto",
        10: "TensorProto",
        11: "GraphProto",
        22: "SparseTensorProto",
        23: "SparseTensorProto",
    },
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1  # TensorProto's fields; DataLocation.EXTERNAL
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5  # protobuf's wire types


class _Malformed(Exception):
    """Not a protobuf message: ONNX Runtime says what is wrong when it loads the file."""


def _varint(data: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise _Malformed


def _fields(data: mmap.mmap | bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, a, b) of each field of the message in ``data[pos:end]``: a varint's
    value as ``a``, a length-delimited field's bytes as ``data[a:b]``."""
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
            yield number, wire, value, pos
        elif wire == _LENGTH:
            size, pos = _varint(data, pos, end)
            if pos + size > end:
                raise _Malformed
            yield number, wire, pos, pos + size
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:  # groups: not in ONNX
            raise _Malformed
    if pos != end:
        raise _Malformed


def _external_tensors(
    data: mmap.mmap | bytes, kind: str, pos: int, end: int, found: list[tuple[str, str]], depth: int = 0
) -> None:
    """Append (tensor name, location) for each tensor in ``data[pos:end]`` (a ``kind`` message)
    stored as external data."""
    if depth > 100:  # subgraphs nest a few levels, not hundreds
        raise _Malformed
    if kind != "TensorProto":
        children = _TENSOR_FIELDS[kind]
        for number, wire, a, b in _fields(data, pos, end):
            if wire == _LENGTH and number in children:
                _external_tensors(data, children[number], a, b, found, depth + 1)
        return
    name, location, external = "", None, False
    for number, wire, a, b in _fields(data, pos, end):
        if number == _TENSOR_NAME and wire == _LENGTH:
            name = bytes(data[a:b]).decode("utf-8", "replace")
        elif number == _DATA_LOCATION and wire == _VARINT:
            external = a == _EXTERNAL
        elif number == _EXTERNAL_DATA and wire == _LENGTH:  # StringStringEntryProto: key 1, value 2
            entry = {n: bytes(data[x:y]) for n, w, x, y in _fields(data, a, b) if w == _LENGTH}
            if entry.get(1) == b"location":
                location = entry.get(2, b"").decode("utf-8", "replace")
    if external and location is not None:
        found.append((name, location))


def external_data(onnx_path: str | Path) -> list[tuple[str, str]]:
    """(tensor name, location) of each tensor that the ONNX file ``onnx_path`` stores as external
    data, the location as written (relative to the file's folder). Reads only the messages that
    can hold tensors, through a memory map: the weights themselves are skipped, not read. A file
    that is not protobuf gives []: ONNX Runtime refuses it with its own reason."""
    found: list[tuple[str, str]] = []
    try:
        with open(onnx_path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return []
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _external_tensors(data, "ModelProto", 0, len(data), found)
    except _Malformed:
        return []
    return found
