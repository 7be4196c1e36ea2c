"""The KServe V2 wire codec: numpy arrays to and from ``InferTensorContents`` and raw bytes, for
the server and its clients alike; every refusal names the field and the expectation.

Nothing here knows about gRPC calls or models: a caller hands in protobuf tensors and gets arrays
(or the reverse). A tensor that cannot be decoded raises :class:`TensorError`, which the server
answers with INVALID_ARGUMENT.

Wire formats follow Triton, whose clients are the reference:

* ``raw_input_contents`` / ``raw_output_contents``: one entry per tensor, elements row-major and
  little-endian; BOOL one byte each; BYTES each element preceded by its length as a 4-byte
  little-endian unsigned integer. The stock ``tritonclient.grpc`` always sends raw.
* ``contents``: typed repeated fields; the narrow integers travel widened (INT8 in ``int_contents``,
  UINT16 in ``uint_contents``), and FP16 has no field at all.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from cnnserve.datatypes import DATATYPES, v2_datatype
from cnnserve.generated.inference import grpc_service_pb2 as pb

__all__ = ["CONTENTS_FIELDS", "DATATYPES", "TensorError", "decode_binary", "decode_input", "decode_request_inputs",
           "decode_values", "encode_output", "pack_bytes", "v2_datatype"]  # fmt: skip

InputTensor = pb.ModelInferRequest.InferInputTensor
OutputTensor = pb.ModelInferResponse.InferOutputTensor


# The element type of each InferTensorContents field: values are read at this width first, so that
# a value the narrower datatype cannot hold is refused rather than wrapped around.
CONTENTS_FIELDS: dict[str, np.dtype] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
    "bytes_contents": np.dtype(np.object_),
}
# The little-endian dtype each datatype has on the wire.
_WIRE_DTYPES: dict[str, np.dtype] = {name: spec.dtype.newbyteorder("<") for name, spec in DATATYPES.items()}
_LENGTH = struct.Struct("<I")  # the length prefix of each BYTES element


class TensorError(ValueError):
    """A tensor that cannot be decoded or encoded; the message names the field and the expectation."""


# -- requests --------------------------------------------------------------------------------------


def decode_request_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Every input of a request by name, pairing ``raw_input_contents[i]`` with ``inputs[i]``."""
    raw = request.raw_input_contents
    # Triton's rule: raw data is all or nothing, one entry per input in the same order.
    if raw and len(raw) != len(request.inputs):
        raise TensorError(
            f"raw_input_contents has {len(raw)} entries, expected one per input ({len(request.inputs)} inputs)"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise TensorError(f"inputs[{i}]: input {tensor.name!r} is given more than once")
        arrays[tensor.name] = decode_input(tensor, raw[i] if raw else None)
    return arrays


def decode_input(tensor: InputTensor, raw: bytes | None) -> np.ndarray:
    """One input as a numpy array of its datatype's dtype, from ``raw`` when given (its
    ``raw_input_contents`` entry) or else from its typed ``contents``.

    Numeric arrays (BOOL aside) decoded from raw bytes are read-only views of ``raw``: no copy.
    """
    where = f"input {tensor.name!r}"
    if tensor.datatype not in DATATYPES:
        raise TensorError(f"{where}: datatype {tensor.datatype!r} is not a V2 datatype (one of {', '.join(DATATYPES)})")
    shape = _shape(tensor, where)
    count = math.prod(shape)  # Python ints: a hostile shape cannot overflow it
    # HasField first: raw callers leave contents unset, and 12 getattr calls per input add up.
    given = []
    if tensor.HasField("contents"):
        given = [name for name in CONTENTS_FIELDS if len(getattr(tensor.contents, name))]
    if raw is not None:
        if given:
            raise TensorError(f"{where}: data given twice, in contents.{given[0]} and in raw_input_contents; send one")
        array = _from_raw(tensor.datatype, raw, count, shape, where)
    else:
        array = _from_contents(tensor, given, count, where)
    return _reshape(array, shape, where)


def decode_binary(name: str, datatype: str, shape: Sequence[int], raw: bytes, field: str) -> np.ndarray:
    """One tensor from its raw bytes in the format of ``raw_input_contents`` (REST's binary
    tensor extension uses the same), ``field`` naming where they came from in messages."""
    where, shape = f"input {name!r}", _checked_shape(datatype, shape, f"input {name!r}")
    return _reshape(_from_raw(datatype, raw, math.prod(shape), shape, where, field), shape, where)


# The element types of JSON values each kind of numpy datatype takes as they are.
_PLAIN_TYPES: dict[str, set[type]] = {"b": {bool}, "i": {int}, "u": {int}, "f": {float, int}}


def decode_values(name: str, datatype: str, shape: Sequence[int], values: Sequence[object], field: str) -> np.ndarray:
    """One tensor from a flat list of its elements (REST's JSON ``data``), row-major; BYTES
    elements are strings (UTF-8) or bytes."""
    where, shape = f"input {name!r}", _checked_shape(datatype, shape, f"input {name!r}")
    count = math.prod(shape)
    if len(values) != count:
        raise TensorError(f"{where}: {field} has {len(values)} elements, expected {count} for shape {list(shape)}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=np.object_)
        array[:] = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
        return _reshape(array, shape, where)
    dtype = DATATYPES[datatype].dtype
    # The types present, counted in C: the element-by-element search below runs only when some
    # element is not of a plain type the datatype takes (to name the first one, or to accept an
    # int subclass other than bool).
    if not set(map(type, values)) <= _PLAIN_TYPES[dtype.kind]:
        kinds: dict[str, type | tuple[type, ...]] = {"b": bool, "i": int, "u": int, "f": (int, float)}
        kind = kinds[dtype.kind]
        wrong = next((i for i, v in enumerate(values) if isinstance(v, bool) != (dtype.kind == "b")
                      or not isinstance(v, kind)), None)  # fmt: skip
        if wrong is not None:
            raise TensorError(f"{where}: {field}[{wrong}] is {values[wrong]!r}, not a {datatype} value")
    try:  # read wide first, so that a value the datatype cannot hold is refused, not wrapped
        wide = np.array(values, dtype={"f": np.float64, "i": np.int64, "u": np.int64}.get(dtype.kind, dtype))
    except OverflowError:
        raise TensorError(f"{where}: {field} holds a value outside {datatype}'s range") from None
    if dtype.kind == "u" and (wide < 0).any():
        i = int(np.flatnonzero(wide < 0)[0])
        raise TensorError(f"{where}: {field}[{i}] is {wide[i]}, outside {datatype}'s range")
    return _reshape(_narrow(wide, dtype, f"{where}: {field}", datatype), shape, where)


def _checked_shape(datatype: str, shape: Sequence[int], where: str) -> tuple[int, ...]:
    if datatype not in DATATYPES:
        raise TensorError(f"{where}: datatype {datatype!r} is not a V2 datatype (one of {', '.join(DATATYPES)})")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape):
        raise TensorError(f"{where}: shape {list(shape)} must be integers >= 0")
    return tuple(shape)


def _shape(tensor: InputTensor, where: str) -> tuple[int, ...]:
    # The proto field is int64, so dimensions are integers; -1 (a wildcard in metadata) and other
    # negatives are not sizes.
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"{where}: shape {list(shape)} has a negative dimension; dimensions are >= 0")
    return shape


def _from_raw(
    datatype: str, raw: bytes, count: int, shape: tuple[int, ...], where: str, field: str = "raw_input_contents"
) -> np.ndarray:
    if datatype == "BYTES":
        return _unpack_bytes(raw, count, where, field)
    dtype = DATATYPES[datatype].dtype
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            f"{where}: {field} has {len(raw)} bytes, expected {expected} for shape {list(shape)} {datatype}"
        )
    if datatype == "BOOL":
        # Any non-zero byte is true; numpy would keep the byte as is and misbehave later.
        return np.frombuffer(raw, dtype=np.uint8) != 0
    # Little-endian on the wire; on a little-endian host this is a zero-copy view.
    return np.frombuffer(raw, dtype=_WIRE_DTYPES[datatype]).astype(dtype, copy=False)


def _from_contents(tensor: InputTensor, given: list[str], count: int, where: str) -> np.ndarray:
    datatype = tensor.datatype
    field = DATATYPES[datatype].field
    if not field:
        raise TensorError(f"{where}: {datatype} has no contents field; send it in raw_input_contents")
    wrong = [name for name in given if name != field]
    if wrong:
        raise TensorError(f"{where}: {datatype} data goes in contents.{field}, not contents.{wrong[0]}")
    values = getattr(tensor.contents, field)
    if not given and count:
        raise TensorError(
            f"{where}: no data; expected {count} elements in contents.{field} or a raw_input_contents entry"
        )
    if len(values) != count:
        raise TensorError(
            f"{where}: contents.{field} has {len(values)} elements, expected {count} for shape {list(tensor.shape)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=np.object_)
        array[:] = list(values)  # element by element: numpy would otherwise make a 2-D array of bytes
        return array
    wide = np.array(values, dtype=CONTENTS_FIELDS[field])
    return _narrow(wide, DATATYPES[datatype].dtype, f"{where}: contents.{field}", datatype)


def _narrow(wide: np.ndarray, dtype: np.dtype, where: str, datatype: str) -> np.ndarray:
    """``wide`` cast to ``dtype``, refusing values that would not survive the cast."""
    if dtype.kind in "iu" and dtype.itemsize < wide.dtype.itemsize:
        info = np.iinfo(dtype)
        outside = np.flatnonzero((wide < info.min) | (wide > info.max))
        if outside.size:
            i = int(outside[0])
            raise TensorError(f"{where}[{i}] is {wide[i]}, outside {datatype}'s range [{info.min}, {info.max}]")
    return wide.astype(dtype, copy=False)


def _reshape(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # more than numpy's 64 dimensions, or an absurd zero-sized shape
        raise TensorError(f"{where}: shape {list(shape)} is not a usable array shape ({exc})") from None


# -- BYTES -----------------------------------------------------------------------------------------


def pack_bytes(items: Sequence[object] | np.ndarray) -> bytes:
    """BYTES elements in the raw format: each one's 4-byte little-endian length, then the bytes.

    ``bytes`` go as they are, ``str`` as UTF-8, anything else as ``str(item)`` in UTF-8, as
    tritonclient's ``serialize_byte_tensor`` does.
    """
    parts: list[bytes] = []
    for item in np.asarray(items, dtype=np.object_).reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts += (_LENGTH.pack(len(data)), data)
    return b"".join(parts)


def _unpack_bytes(raw: bytes, count: int, where: str, field: str = "raw_input_contents") -> np.ndarray:
    """The inverse of :func:`pack_bytes`, checking that exactly ``count`` elements fill ``raw``."""
    if count * _LENGTH.size > len(raw):  # before allocating: the shape is the client's to choose
        raise TensorError(
            f"{where}: {field} has {len(raw)} bytes, too few for {count} BYTES elements "
            f"of at least {_LENGTH.size} bytes each (their length prefixes)"
        )
    items = np.empty(count, dtype=np.object_)
    view = memoryview(raw)
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > len(raw):
            raise TensorError(
                f"{where}: {field} ends at byte {len(raw)} before BYTES element {i} of {count}; "
                "each element is a 4-byte little-endian length, then that many bytes"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise TensorError(
                f"{where}: {field} BYTES element {i} claims {length} bytes, only {len(raw) - offset} are left"
            )
        items[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise TensorError(
            f"{where}: {field} has {len(raw) - offset} bytes left after the {count} BYTES elements the shape holds"
        )
    return items


# -- responses -------------------------------------------------------------------------------------


def encode_output(name: str, array: np.ndarray) -> tuple[OutputTensor, bytes]:
    """An output tensor's metadata, and its ``raw_output_contents`` entry.

    Raises :class:`TensorError` for a dtype V2 cannot carry (on the server, the model produced it:
    an internal error, not the caller's).
    """
    try:
        datatype = v2_datatype(array.dtype)
    except ValueError as exc:
        raise TensorError(f"output {name!r}: {exc}") from None
    if datatype == "BYTES":
        raw = pack_bytes(array)
    else:
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return OutputTensor(name=name, datatype=datatype, shape=array.shape), raw
