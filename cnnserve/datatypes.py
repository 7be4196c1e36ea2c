"""The V2 datatypes, in one table: numpy's dtype, the ``InferTensorContents`` field that carries
each, and ONNX Runtime's name for it. The codec, the repository format, the runtime and the
clients all read this table; none keeps a copy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Datatype(NamedTuple):
    dtype: np.dtype
    field: str  # the InferTensorContents field that carries it; "" where only raw bytes can
    onnx: str  # ONNX Runtime's element type, as NodeArg.type spells it


DATATYPES: dict[str, Datatype] = {
    "BOOL": Datatype(np.dtype(np.bool_), "bool_contents", "tensor(bool)"),
    "UINT8": Datatype(np.dtype(np.uint8), "uint_contents", "tensor(uint8)"),
    "UINT16": Datatype(np.dtype(np.uint16), "uint_contents", "tensor(uint16)"),
    "UINT32": Datatype(np.dtype(np.uint32), "uint_contents", "tensor(uint32)"),
    "UINT64": Datatype(np.dtype(np.uint64), "uint64_contents", "tensor(uint64)"),
    "INT8": Datatype(np.dtype(np.int8), "int_contents", "tensor(int8)"),
    "INT16": Datatype(np.dtype(np.int16), "int_contents", "tensor(int16)"),
    "INT32": Datatype(np.dtype(np.int32), "int_contents", "tensor(int32)"),
    "INT64": Datatype(np.dtype(np.int64), "int64_contents", "tensor(int64)"),
    "FP16": Datatype(np.dtype(np.float16), "", "tensor(float16)"),
    "FP32": Datatype(np.dtype(np.float32), "fp32_contents", "tensor(float)"),
    "FP64": Datatype(np.dtype(np.float64), "fp64_contents", "tensor(double)"),
    "BYTES": Datatype(np.dtype(np.object_), "bytes_contents", "tensor(string)"),
}

# numpy dtype (native byte order) -> V2 datatype, for every datatype but BYTES.
V2_OF_NUMPY: dict[np.dtype, str] = {spec.dtype: name for name, spec in DATATYPES.items() if name != "BYTES"}


def v2_datatype(dtype: np.dtype) -> str:
    """The V2 datatype of a numpy dtype (any byte order); strings and objects are BYTES."""
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return V2_OF_NUMPY[dtype.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no V2 datatype") from None


def numpy_dtype(datatype: str) -> np.dtype:
    """numpy's dtype for a V2 datatype name (KeyError for a name that is none)."""
    return DATATYPES[datatype].dtype
