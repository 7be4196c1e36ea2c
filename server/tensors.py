"""V2 tensors <-> numpy, for the KServe servicer; every refusal names the field and the expectation.

Nothing here knows about gRPC calls or models: the servicer hands in protobuf tensors and gets
arrays (or the reverse), and a bad tensor raises :class:`server.errors.InvalidArgument`.

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
from typing import NamedTuple

import numpy as np

from server import errors
from server.generated.inference import grpc_service_pb2 as pb

InputTensor = pb.ModelInferRequest.InferInputTensor
OutputTensor = pb.ModelInferResponse.InferOutputTensor


class Datatype(NamedTuple):
    dtype: np.dtype
    field: str  # the InferTensorContents field that carries it; "" where only raw bytes can


DATATYPES: dict[str, Datatype] = {
    "BOOL": Datatype(np.dtype(np.bool_), "bool_contents"),
    "UINT8": Datatype(np.dtype(np.uint8), "uint_contents"),
    "UINT16": Datatype(np.dtype(np.uint16), "uint_contents"),
    "UINT32": Datatype(np.dtype(np.uint32), "uint_contents"),
    "UINT64": Datatype(np.dtype(np.uint64), "uint64_contents"),
    "INT8": Datatype(np.dtype(np.int8), "int_contents"),
    "INT16": Datatype(np.dtype(np.int16), "int_contents"),
    "INT32": Datatype(np.dtype(np.int32), "int_contents"),
    "INT64": Datatype(np.dtype(np.int64), "int64_contents"),
    "FP16": Datatype(np.dtype(np.float16), ""),
    "FP32": Datatype(np.dtype(np.float32), "fp32_contents"),
    "FP64": Datatype(np.dtype(np.float64), "fp64_contents"),
    "BYTES": Datatype(np.dtype(np.object_), "bytes_contents"),
}

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

# numpy dtype (native byte order) -> V2 datatype, for every datatype but BYTES.
V2_OF_NUMPY: dict[np.dtype, str] = {spec.dtype: name for name, spec in DATATYPES.items() if name != "BYTES"}
# The little-endian dtype each datatype has on the wire.
_WIRE_DTYPES: dict[str, np.dtype] = {name: spec.dtype.newbyteorder("<") for name, spec in DATATYPES.items()}
_LENGTH = struct.Struct("<I")  # the length prefix of each BYTES element


def v2_datatype(dtype: np.dtype) -> str:
    """The V2 datatype of a numpy dtype (any byte order); strings and objects are BYTES."""
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return V2_OF_NUMPY[dtype.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no V2 datatype") from None


# -- requests --------------------------------------------------------------------------------------


def decode_request_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Every input of a request by name, pairing ``raw_input_contents[i]`` with ``inputs[i]``."""
    raw = request.raw_input_contents
    # Triton's rule: raw data is all or nothing, one entry per input in the same order.
    if raw and len(raw) != len(request.inputs):
        raise errors.InvalidArgument(
            f"raw_input_contents has {len(raw)} entries, expected one per input ({len(request.inputs)} inputs)"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise errors.InvalidArgument(f"inputs[{i}]: input {tensor.name!r} is given more than once")
        arrays[tensor.name] = decode_input(tensor, raw[i] if raw else None)
    return arrays


def decode_input(tensor: InputTensor, raw: bytes | None) -> np.ndarray:
    """One input as a numpy array of its datatype's dtype, from ``raw`` when given (its
    ``raw_input_contents`` entry) or else from its typed ``contents``.

    Numeric arrays (BOOL aside) decoded from raw bytes are read-only views of ``raw``: no copy.
    """
    where = f"input {tensor.name!r}"
    if tensor.datatype not in DATATYPES:
        raise errors.InvalidArgument(
            f"{where}: datatype {tensor.datatype!r} is not a V2 datatype (one of {', '.join(DATATYPES)})"
        )
    shape = _shape(tensor, where)
    count = math.prod(shape)  # Python ints: a hostile shape cannot overflow it
    # HasField first: raw callers leave contents unset, and 12 getattr calls per input add up.
    given = []
    if tensor.HasField("contents"):
        given = [name for name in CONTENTS_FIELDS if len(getattr(tensor.contents, name))]
    if raw is not None:
        if given:
            raise errors.InvalidArgument(
                f"{where}: data given twice, in contents.{given[0]} and in raw_input_contents; send one"
            )
        array = _from_raw(tensor.datatype, raw, count, shape, where)
    else:
        array = _from_contents(tensor, given, count, where)
    return _reshape(array, shape, where)


def _shape(tensor: InputTensor, where: str) -> tuple[int, ...]:
    # The proto field is int64, so dimensions are integers; -1 (a wildcard in metadata) and other
    # negatives are not sizes.
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise errors.InvalidArgument(f"{where}: shape {list(shape)} has a negative dimension; dimensions are >= 0")
    return shape


def _from_raw(datatype: str, raw: bytes, count: int, shape: tuple[int, ...], where: str) -> np.ndarray:
    if datatype == "BYTES":
        return _unpack_bytes(raw, count, where)
    dtype = DATATYPES[datatype].dtype
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise errors.InvalidArgument(
            f"{where}: raw_input_contents has {len(raw)} bytes, expected {expected} for shape {list(shape)} {datatype}"
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
        raise errors.InvalidArgument(f"{where}: {datatype} has no contents field; send it in raw_input_contents")
    wrong = [name for name in given if name != field]
    if wrong:
        raise errors.InvalidArgument(f"{where}: {datatype} data goes in contents.{field}, not contents.{wrong[0]}")
    values = getattr(tensor.contents, field)
    if not given and count:
        raise errors.InvalidArgument(
            f"{where}: no data; expected {count} elements in contents.{field} or a raw_input_contents entry"
        )
    if len(values) != count:
        raise errors.InvalidArgument(
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
            raise errors.InvalidArgument(
                f"{where}[{i}] is {wide[i]}, outside {datatype}'s range [{info.min}, {info.max}]"
            )
    return wide.astype(dtype, copy=False)


def _reshape(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as exc:  # more than numpy's 64 dimensions, or an absurd zero-sized shape
        raise errors.InvalidArgument(f"{where}: shape {list(shape)} is not a usable array shape ({exc})") from None


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


def _unpack_bytes(raw: bytes, count: int, where: str) -> np.ndarray:
    """The inverse of :func:`pack_bytes`, checking that exactly ``count`` elements fill ``raw``."""
    if count * _LENGTH.size > len(raw):  # before allocating: the shape is the client's to choose
        raise errors.InvalidArgument(
            f"{where}: raw_input_contents has {len(raw)} bytes, too few for {count} BYTES elements "
            f"of at least {_LENGTH.size} bytes each (their length prefixes)"
        )
    items = np.empty(count, dtype=np.object_)
    view = memoryview(raw)
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > len(raw):
            raise errors.InvalidArgument(
                f"{where}: raw_input_contents ends at byte {len(raw)} before BYTES element {i} of {count}; "
                "each element is a 4-byte little-endian length, then that many bytes"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise errors.InvalidArgument(
                f"{where}: raw_input_contents BYTES element {i} claims {length} bytes, "
                f"only {len(raw) - offset} are left"
            )
        items[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise errors.InvalidArgument(
            f"{where}: raw_input_contents has {len(raw) - offset} bytes left after the {count} BYTES elements "
            "the shape holds"
        )
    return items


# -- responses -------------------------------------------------------------------------------------


def encode_output(name: str, array: np.ndarray) -> tuple[OutputTensor, bytes]:
    """An output tensor's metadata, and its ``raw_output_contents`` entry.

    Raises :class:`server.errors.Internal` for a dtype V2 cannot carry: the model, not the caller,
    produced it.
    """
    try:
        datatype = v2_datatype(array.dtype)
    except ValueError as exc:
        raise errors.Internal(f"output {name!r}: {exc}") from None
    if datatype == "BYTES":
        raw = pack_bytes(array)
    else:
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return OutputTensor(name=name, datatype=datatype, shape=array.shape), raw


# -- Triton's classification extension -------------------------------------------------------------


def classify(scores: np.ndarray, k: int, labels: Sequence[str] = ()) -> np.ndarray:
    """The top ``k`` classes of each row of ``scores`` (N, C), as Triton reports them: an (N, min(k, C))
    BYTES array of ``b"score:index:label"``, or ``b"score:index"`` where the class has no label.

    Highest score first; equal scores keep index order, NaN comes last. The score is written as
    Triton's ``std::to_string`` writes it: floats with six decimals (``"12.345600"``), integers
    plainly (``"3"``).
    """
    if scores.ndim != 2:
        raise errors.InvalidArgument(f"classification needs scores shaped [batch, classes], got {list(scores.shape)}")
    if scores.dtype.kind not in "iuf":
        raise errors.InvalidArgument(f"classification needs numeric scores, got dtype {scores.dtype}")
    if k < 1:
        raise errors.InvalidArgument(f"classification needs a class count >= 1, got {k}")
    top = _descending(scores)[:, :k]
    out = np.empty(top.shape, dtype=np.object_)
    for row, indices in enumerate(top):
        for col, index in enumerate(indices.tolist()):
            item = f"{_score_text(scores[row, index].item())}:{index}"
            if index < len(labels) and labels[index]:
                item += f":{labels[index]}"
            out[row, col] = item.encode("utf-8")
    return out


def _descending(scores: np.ndarray) -> np.ndarray:
    """Column indices of each row by descending score, ties by ascending index, NaN last."""
    if scores.dtype.kind == "f":
        return np.argsort(-scores, axis=1, kind="stable")  # argsort puts NaN (and -NaN) last
    # Integers: negating would wrap unsigned values, so sort the mirrored row ascending, stably,
    # and read it backwards; ties then come out in ascending index order.
    mirrored = np.argsort(scores[:, ::-1], axis=1, kind="stable")[:, ::-1]
    return scores.shape[1] - 1 - mirrored


def _score_text(value: float | int) -> str:
    # std::to_string: "%f" for floating point, "%d" for integers.
    return f"{value:f}" if isinstance(value, float) else str(value)
