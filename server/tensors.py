"""V2 tensors <-> numpy, for the KServe servicer; every refusal names the field and the expectation."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from server import errors
from server.generated.inference import grpc_service_pb2 as pb

# V2 datatype -> (numpy dtype, InferTensorContents field or "" where only raw bytes carry it).
DATATYPES: dict[str, tuple[np.dtype, str]] = {
    "BOOL": (np.dtype(np.bool_), "bool_contents"),
    "UINT8": (np.dtype(np.uint8), "uint_contents"),
    "UINT16": (np.dtype(np.uint16), "uint_contents"),
    "UINT32": (np.dtype(np.uint32), "uint_contents"),
    "UINT64": (np.dtype(np.uint64), "uint64_contents"),
    "INT8": (np.dtype(np.int8), "int_contents"),
    "INT16": (np.dtype(np.int16), "int_contents"),
    "INT32": (np.dtype(np.int32), "int_contents"),
    "INT64": (np.dtype(np.int64), "int64_contents"),
    "FP16": (np.dtype(np.float16), ""),
    "FP32": (np.dtype(np.float32), "fp32_contents"),
    "FP64": (np.dtype(np.float64), "fp64_contents"),
    "BYTES": (np.dtype(object), "bytes_contents"),
}
V2_OF_NUMPY = {dtype: name for name, (dtype, _) in DATATYPES.items() if name != "BYTES"}


def _shape(tensor: pb.ModelInferRequest.InferInputTensor) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise errors.InvalidArgument(f"input {tensor.name!r}: shape {list(shape)} has a negative dimension")
    return shape


def _decode_bytes(name: str, raw: bytes, count: int) -> np.ndarray:
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise errors.InvalidArgument(
                f"input {name!r}: raw BYTES element {len(items)} has a truncated length prefix"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise errors.InvalidArgument(f"input {name!r}: raw BYTES element {len(items)} runs past the end")
        items.append(raw[offset : offset + length])
        offset += length
    if len(items) != count:
        raise errors.InvalidArgument(f"input {name!r}: raw BYTES holds {len(items)} elements, shape needs {count}")
    return np.array(items, dtype=object)


def decode_input(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    """One input tensor as a numpy array, from its typed ``contents`` or its raw bytes."""
    name = tensor.name
    if tensor.datatype not in DATATYPES:
        raise errors.InvalidArgument(
            f"input {name!r}: datatype {tensor.datatype!r} is not a V2 datatype ({', '.join(DATATYPES)})"
        )
    dtype, field = DATATYPES[tensor.datatype]
    shape = _shape(tensor)
    count = int(np.prod(shape, dtype=np.int64))
    has_contents = tensor.HasField("contents") and any(
        len(getattr(tensor.contents, f)) for f in {f for _, f in DATATYPES.values() if f}
    )
    if raw is not None:
        if has_contents:
            raise errors.InvalidArgument(f"input {name!r}: give either contents or raw_input_contents, not both")
        if tensor.datatype == "BYTES":
            return _decode_bytes(name, raw, count).reshape(shape)
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise errors.InvalidArgument(
                f"input {name!r}: raw_input_contents has {len(raw)} bytes, expected {expected} for shape "
                f"{list(shape)} {tensor.datatype}"
            )
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
    if not field:
        raise errors.InvalidArgument(f"input {name!r}: {tensor.datatype} can only be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise errors.InvalidArgument(
            f"input {name!r}: contents.{field} has {len(values)} elements, expected {count} for shape {list(shape)}"
        )
    if tensor.datatype == "BYTES":
        return np.array(list(values), dtype=object).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def decode_request_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise errors.InvalidArgument(
            f"raw_input_contents has {len(raw)} entries, expected one per input ({len(request.inputs)})"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise errors.InvalidArgument(f"inputs: {tensor.name!r} given twice")
        arrays[tensor.name] = decode_input(tensor, raw[i] if raw else None)
    return arrays


def encode_output(name: str, array: np.ndarray) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes]:
    """An output tensor's metadata and its raw_output_contents bytes."""
    if array.dtype == object:
        datatype = "BYTES"
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(data)) + data)
        raw = b"".join(parts)
    else:
        datatype = V2_OF_NUMPY[array.dtype]
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    tensor = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=list(array.shape))
    return tensor, raw


def classify(scores: np.ndarray, k: int, labels: Sequence[str] = ()) -> np.ndarray:
    """Triton's classification extension: the top ``k`` of each row as "score:index[:label]"."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.empty(top.shape, dtype=object)
    for row, indices in enumerate(top):
        for col, index in enumerate(indices):
            text = f"{float(scores[row, index]):g}:{int(index)}"
            if labels:
                text += f":{labels[int(index)]}"
            out[row, col] = text.encode()
    return out
