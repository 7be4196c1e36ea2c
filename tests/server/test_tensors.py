"""V2 tensor conversions, including what the stock tritonclient puts on the wire."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import deserialize_bytes_tensor

from server import errors, tensors
from server.generated.inference import grpc_service_pb2 as pb

NUMERIC = [name for name in tensors.DATATYPES if name != "BYTES"]


def _request_from_tritonclient(array: np.ndarray, datatype: str) -> pb.ModelInferRequest:
    """The ModelInferRequest tritonclient builds (always raw bytes), parsed with our own stubs."""
    tensor = tc.InferInput("x", list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.append(pb.ModelInferRequest.InferInputTensor.FromString(tensor._get_tensor().SerializeToString()))
    raw = tensor._get_content()
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


@pytest.mark.parametrize("datatype", NUMERIC)
def test_raw_round_trip_through_tritonclient(datatype: str) -> None:
    dtype = tensors.DATATYPES[datatype][0]
    array = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    decoded = tensors.decode_request_inputs(_request_from_tritonclient(array, datatype))
    np.testing.assert_array_equal(decoded["x"], array)
    assert decoded["x"].dtype == dtype


@pytest.mark.parametrize("datatype", [d for d in NUMERIC if d != "FP16"])
def test_typed_contents(datatype: str) -> None:
    dtype, field = tensors.DATATYPES[datatype]
    array = (np.arange(6) % 5).astype(dtype).reshape(2, 3)
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=[2, 3])
    getattr(tensor.contents, field).extend(array.reshape(-1).tolist())
    decoded = tensors.decode_request_inputs(pb.ModelInferRequest(inputs=[tensor]))
    np.testing.assert_array_equal(decoded["x"], array)
    assert decoded["x"].dtype == dtype


def test_bytes_both_ways() -> None:
    array = np.array([[b"a", b""], [b"hello", b"\x00\xff"]], dtype=object)
    decoded = tensors.decode_request_inputs(_request_from_tritonclient(array, "BYTES"))
    assert decoded["x"].tolist() == array.tolist()
    typed = pb.ModelInferRequest.InferInputTensor(name="x", datatype="BYTES", shape=[2, 2])
    typed.contents.bytes_contents.extend(array.reshape(-1).tolist())
    assert tensors.decode_input(typed, None).tolist() == array.tolist()
    tensor, raw = tensors.encode_output("y", array)
    assert tensor.datatype == "BYTES" and list(tensor.shape) == [2, 2]
    assert deserialize_bytes_tensor(raw).tolist() == [b"a", b"", b"hello", b"\x00\xff"]


def test_encode_output_is_little_endian_raw() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor, raw = tensors.encode_output("logits", array)
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("logits", "FP32", [2, 3])
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4").reshape(2, 3), array)


def _tensor(**kw: object) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(name="input", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tensor", "raw", "message"),
    [
        (_tensor(datatype="FP33", shape=[1]), None, "input 'input': datatype 'FP33' is not a V2 datatype"),
        (_tensor(datatype="FP32", shape=[1, -2]), None, "input 'input': shape [1, -2] has a negative dimension"),
        (
            _tensor(datatype="FP32", shape=[1, 3, 224, 224]),
            b"\x00" * 602111,
            "input 'input': raw_input_contents has 602111 bytes, expected 602112 for shape [1, 3, 224, 224] FP32",
        ),
        (
            _tensor(datatype="FP32", shape=[2, 2], contents=pb.InferTensorContents(fp32_contents=[1, 2, 3])),
            None,
            "input 'input': contents.fp32_contents has 3 elements, expected 4 for shape [2, 2]",
        ),
        (
            _tensor(datatype="FP32", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1])),
            b"\x00" * 4,
            "input 'input': give either contents or raw_input_contents, not both",
        ),
        (_tensor(datatype="FP16", shape=[1]), None, "input 'input': FP16 can only be sent in raw_input_contents"),
        (_tensor(datatype="BYTES", shape=[2]), b"\x05\x00\x00\x00ab", "raw BYTES element 0 runs past the end"),
    ],
)
def test_bad_tensors_name_the_field(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, message: str
) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        tensors.decode_input(tensor, raw)
    assert message in str(info.value)


def test_raw_entries_must_pair_with_inputs() -> None:
    request = pb.ModelInferRequest(inputs=[_tensor(datatype="FP32", shape=[1]), _tensor(datatype="FP32", shape=[1])])
    request.inputs[1].name = "other"
    request.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(errors.InvalidArgument, match=r"raw_input_contents has 1 entries, expected one per input \(2\)"):
        tensors.decode_request_inputs(request)
    request.raw_input_contents.append(b"\x00" * 4)
    request.inputs[1].name = "input"
    with pytest.raises(errors.InvalidArgument, match="inputs: 'input' given twice"):
        tensors.decode_request_inputs(request)


def test_classification_strings_are_tritons() -> None:
    scores = np.array([[0.1, 2.5, -1.0, 2.25], [3.0, 0.0, 1.0, 2.0]], dtype=np.float32)
    top = tensors.classify(scores, 2, ["a", "b", "c", "d"])
    assert top.tolist() == [[b"2.5:1:b", b"2.25:3:d"], [b"3:0:a", b"2:3:d"]]
    assert tensors.classify(scores, 1).tolist() == [[b"2.5:1"], [b"3:0"]]
