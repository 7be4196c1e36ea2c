"""The V2 wire codec, checked against what the stock tritonclient sends and reads."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.grpc import _utils as tc_utils
from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor, triton_to_np_dtype
from wire import tritonclient_reads

from cnnserve import codec
from cnnserve.generated.inference import grpc_service_pb2 as pb

ALL = list(codec.DATATYPES)
TYPED = [name for name in ALL if codec.DATATYPES[name].field]  # all but FP16


def sample(datatype: str) -> np.ndarray:
    """A (2, 3) array of ``datatype`` that includes its extreme values."""
    dtype = codec.DATATYPES[datatype].dtype
    if datatype == "BYTES":
        return np.array([[b"", b"a", "é".encode()], [b"\x00\xff", b"hello world", b"x" * 300]], dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind == "f":
        real = np.finfo(dtype)
        return np.array([[0, -1.5, real.max], [real.min, real.tiny, np.inf]], dtype=dtype)
    integer = np.iinfo(dtype)
    return np.array([[0, 1, integer.max], [integer.min, integer.max - 1, 7]], dtype=dtype)


def tritonclient_request(**arrays: tuple[np.ndarray, str]) -> pb.ModelInferRequest:
    """The request tritonclient.grpc's ``infer`` would send for these inputs, parsed by our stubs."""
    inputs = []
    for name, (array, datatype) in arrays.items():
        infer_input = tc.InferInput(name, list(array.shape), datatype)
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    request = tc_utils._get_inference_request(
        model_name="m", inputs=inputs, model_version="", request_id="", outputs=None, sequence_id=0,
        sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None,
    )  # fmt: skip
    return pb.ModelInferRequest.FromString(request.SerializeToString())


def input_tensor(datatype: str, shape: list[int], **contents: list) -> pb.ModelInferRequest.InferInputTensor:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return tensor


# -- the datatype table ----------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL)
def test_datatypes_agree_with_tritonclient(datatype: str) -> None:
    dtype = codec.DATATYPES[datatype].dtype
    assert dtype == np.dtype(triton_to_np_dtype(datatype))
    assert codec.v2_datatype(dtype) == np_to_triton_dtype(dtype) == datatype


def test_contents_fields() -> None:
    fields = {name: spec.field for name, spec in codec.DATATYPES.items()}
    assert fields == {
        "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
        "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
        "INT64": "int64_contents", "FP16": "", "FP32": "fp32_contents", "FP64": "fp64_contents",
        "BYTES": "bytes_contents",
    }  # fmt: skip
    assert set(codec.CONTENTS_FIELDS) == {f.name for f in pb.InferTensorContents.DESCRIPTOR.fields}


def test_v2_datatype_of_other_dtypes() -> None:
    assert codec.v2_datatype(np.dtype(">f4")) == "FP32"
    assert codec.v2_datatype(np.dtype("U5")) == codec.v2_datatype(np.dtype("S5")) == "BYTES"
    with pytest.raises(ValueError, match="numpy dtype complex64 has no V2 datatype"):
        codec.v2_datatype(np.dtype(np.complex64))


# -- decoding what clients send --------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL)
def test_raw_inputs_from_tritonclient(datatype: str) -> None:
    array = sample(datatype)
    decoded = codec.decode_request_inputs(tritonclient_request(x=(array, datatype)))
    assert list(decoded) == ["x"]
    assert decoded["x"].dtype == codec.DATATYPES[datatype].dtype
    assert decoded["x"].shape == (2, 3)
    assert decoded["x"].tolist() == array.tolist()


def test_several_raw_inputs_pair_in_order() -> None:
    request = tritonclient_request(
        a=(sample("FP32"), "FP32"), b=(sample("BYTES"), "BYTES"), c=(np.zeros((0, 4), np.uint8), "UINT8")
    )
    decoded = codec.decode_request_inputs(request)
    assert list(decoded) == ["a", "b", "c"]
    assert decoded["a"].tolist() == sample("FP32").tolist()
    assert decoded["b"].tolist() == sample("BYTES").tolist()
    assert decoded["c"].shape == (0, 4) and decoded["c"].dtype == np.uint8


@pytest.mark.parametrize("datatype", TYPED)
def test_typed_contents(datatype: str) -> None:
    array = sample(datatype)
    tensor = input_tensor(datatype, [2, 3], **{codec.DATATYPES[datatype].field: array.reshape(-1).tolist()})
    decoded = codec.decode_request_inputs(pb.ModelInferRequest(inputs=[tensor]))["input"]
    assert decoded.dtype == codec.DATATYPES[datatype].dtype
    assert decoded.tolist() == array.tolist()


def test_raw_numeric_inputs_are_read_only_views_of_the_request() -> None:
    raw = np.arange(6, dtype="<f4").tobytes()
    decoded = codec.decode_input(input_tensor("FP32", [2, 3]), raw)
    assert np.shares_memory(decoded, np.frombuffer(raw, np.uint8))
    assert not decoded.flags.writeable


def test_raw_bool_is_any_non_zero_byte() -> None:
    decoded = codec.decode_input(input_tensor("BOOL", [3]), b"\x00\x01\x02")
    assert decoded.dtype == np.bool_ and decoded.tolist() == [False, True, True]
    assert decoded.view(np.uint8).tolist() == [0, 1, 1]


def test_bytes_elements_stay_bytes_objects() -> None:
    raw = codec.pack_bytes([b"ab", b"cd"])
    decoded = codec.decode_input(input_tensor("BYTES", [2]), raw)
    assert decoded.dtype == object and decoded.tolist() == [b"ab", b"cd"]
    typed = codec.decode_input(input_tensor("BYTES", [1, 2], bytes_contents=[b"ab", b"cd"]), None)
    assert typed.shape == (1, 2) and typed.tolist() == [[b"ab", b"cd"]]


def test_empty_tensors_need_no_data() -> None:
    assert codec.decode_input(input_tensor("FP32", [0, 3]), None).shape == (0, 3)
    assert codec.decode_input(input_tensor("BYTES", [2, 0]), b"").shape == (2, 0)


# -- refusals name the field and the expectation ---------------------------------------------------

BAD_INPUTS = [
    pytest.param(input_tensor("FP33", [1]), None,
                 "input 'input': datatype 'FP33' is not a V2 datatype (one of BOOL, UINT8,", id="datatype"),
    pytest.param(input_tensor("FP32", [1, -1]), b"",
                 "input 'input': shape [1, -1] has a negative dimension; dimensions are >= 0", id="negative-dim"),
    pytest.param(input_tensor("FP32", [1, 3, 224, 224]), b"\x00" * 602111,
                 "input 'input': raw_input_contents has 602111 bytes, expected 602112 for shape [1, 3, 224, 224] FP32",
                 id="raw-size"),
    pytest.param(input_tensor("INT64", [2**40, 2**40]), b"\x00" * 8,
                 f"input 'input': raw_input_contents has 8 bytes, expected {2**83} for shape", id="raw-size-huge"),
    pytest.param(input_tensor("FP32", [2, 2], fp32_contents=[1, 2, 3]), None,
                 "input 'input': contents.fp32_contents has 3 elements, expected 4 for shape [2, 2]",
                 id="contents-count"),
    pytest.param(input_tensor("FP32", [2]), None,
                 "input 'input': no data; expected 2 elements in contents.fp32_contents or a raw_input_contents entry",
                 id="no-data"),
    pytest.param(input_tensor("FP32", [1], fp32_contents=[1]), b"\x00" * 4,
                 "input 'input': data given twice, in contents.fp32_contents and in raw_input_contents; send one",
                 id="both"),
    pytest.param(input_tensor("FP32", [2], int_contents=[1, 2]), None,
                 "input 'input': FP32 data goes in contents.fp32_contents, not contents.int_contents",
                 id="wrong-field"),
    pytest.param(input_tensor("FP16", [1]), None,
                 "input 'input': FP16 has no contents field; send it in raw_input_contents", id="fp16-contents"),
    pytest.param(input_tensor("INT8", [3], int_contents=[1, -128, 300]), None,
                 "input 'input': contents.int_contents[2] is 300, outside INT8's range [-128, 127]",
                 id="int8-range"),
    pytest.param(input_tensor("UINT16", [2], uint_contents=[65536, 1]), None,
                 "input 'input': contents.uint_contents[0] is 65536, outside UINT16's range [0, 65535]",
                 id="uint16-range"),
    pytest.param(input_tensor("FP32", [1] * 70), b"\x00" * 4,
                 "input 'input': shape [1, 1, 1,", id="too-many-dims"),
    pytest.param(input_tensor("BYTES", [2**40, 2**40]), b"\x00" * 8,
                 f"input 'input': raw_input_contents has 8 bytes, too few for {2**80} BYTES elements "
                 "of at least 4 bytes each (their length prefixes)", id="bytes-huge-shape"),
    pytest.param(input_tensor("BYTES", [2]), b"\x03\x00\x00\x00abc\x01\x00",
                 "input 'input': raw_input_contents ends at byte 9 before BYTES element 1 of 2; "
                 "each element is a 4-byte little-endian length, then that many bytes", id="bytes-prefix"),
    pytest.param(input_tensor("BYTES", [1]), b"\x05\x00\x00\x00ab",
                 "input 'input': raw_input_contents BYTES element 0 claims 5 bytes, only 2 are left",
                 id="bytes-past-end"),
    pytest.param(input_tensor("BYTES", [1]), b"\x01\x00\x00\x00ab",
                 "input 'input': raw_input_contents has 1 bytes left after the 1 BYTES elements the shape holds",
                 id="bytes-left-over"),
]  # fmt: skip


@pytest.mark.parametrize(("tensor", "raw", "message"), BAD_INPUTS)
def test_bad_inputs_name_the_field(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, message: str
) -> None:
    with pytest.raises(codec.TensorError) as info:  # the server answers INVALID_ARGUMENT (test_server)
        codec.decode_input(tensor, raw)
    assert message in str(info.value)


def test_raw_entries_pair_one_to_one_with_inputs() -> None:
    request = pb.ModelInferRequest(inputs=[input_tensor("FP32", [1]), input_tensor("FP32", [1])])
    request.inputs[1].name = "other"
    request.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(codec.TensorError) as info:
        codec.decode_request_inputs(request)
    assert str(info.value) == "raw_input_contents has 1 entries, expected one per input (2 inputs)"


def test_an_input_given_twice_is_refused() -> None:
    request = pb.ModelInferRequest(inputs=[input_tensor("FP32", [1]), input_tensor("FP32", [1])])
    request.raw_input_contents.extend([b"\x00" * 4, b"\x00" * 4])
    with pytest.raises(codec.TensorError) as info:
        codec.decode_request_inputs(request)
    assert str(info.value) == "inputs[1]: input 'input' is given more than once"


# -- encoding outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL)
def test_outputs_read_back_by_tritonclient(datatype: str) -> None:
    array = sample(datatype)
    tensor, raw = codec.encode_output("y", array)
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("y", datatype, [2, 3])
    assert not tensor.HasField("contents")
    read = tritonclient_reads(tensor, raw)
    assert read.dtype == codec.DATATYPES[datatype].dtype
    assert read.tolist() == array.tolist()


def test_outputs_are_little_endian_whatever_the_array() -> None:
    array = np.arange(6, dtype=">f4").reshape(2, 3)[:, ::2]  # big-endian and not contiguous
    tensor, raw = codec.encode_output("y", array)
    assert tensor.datatype == "FP32" and list(tensor.shape) == [2, 2]
    assert raw == np.array([[0, 2], [3, 5]], dtype="<f4").tobytes()


def test_string_outputs_are_bytes() -> None:
    tensor, raw = codec.encode_output("y", np.array(["a", "é"]))
    assert tensor.datatype == "BYTES"
    assert tritonclient_reads(tensor, raw).tolist() == [b"a", "é".encode()]


def test_pack_bytes_is_tritonclients_serialization() -> None:
    items = np.array([b"ab", "é", 3, b""], dtype=object)
    assert codec.pack_bytes(items) == serialize_byte_tensor(items).item()


def test_an_output_dtype_v2_cannot_carry_is_refused() -> None:
    # The server reports it as INTERNAL: the model, not the caller, produced it.
    with pytest.raises(codec.TensorError, match="output 'y': numpy dtype complex64 has no V2 datatype"):
        codec.encode_output("y", np.zeros(2, np.complex64))


# -- REST: JSON values and the binary extension ----------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "values", "expected"),
    [("FP32", [1, 2.5], [1.0, 2.5]), ("INT8", [-128, 127], [-128, 127]), ("UINT8", [0, 255], [0, 255]),
     ("BOOL", [True, False], [True, False]), ("BYTES", ["é", "b"], [b"\xc3\xa9", b"b"])],
)  # fmt: skip
def test_json_values_decode_to_their_datatype(datatype: str, values: list[object], expected: list[object]) -> None:
    array = codec.decode_values("x", datatype, [2], values, "data")
    assert array.tolist() == expected and array.shape == (2,)


@pytest.mark.parametrize(
    ("datatype", "values", "message"),
    [("UINT8", [1, -1], "data[1] is -1, outside UINT8's range"),
     ("INT8", [1, 200], "data[1] is 200, outside INT8's range [-128, 127]"),
     ("INT64", [2**70, 1], "data holds a value outside INT64's range"),
     ("FP32", [1, "2"], "data[1] is '2', not a FP32 value"),
     ("INT32", [1, True], "data[1] is True, not a INT32 value"),
     ("FP32", [1.0], "data has 1 elements, expected 2 for shape [2]"),
     ("FP8", [1, 2], "datatype 'FP8' is not a V2 datatype")],
)  # fmt: skip
def test_json_values_that_do_not_fit_are_refused_by_name(datatype: str, values: list[object], message: str) -> None:
    with pytest.raises(codec.TensorError, match=re.escape(message)):
        codec.decode_values("x", datatype, [2], values, "data")


def test_binary_data_is_the_raw_format_and_names_its_field() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(codec.decode_binary("x", "FP32", [2, 3], x.tobytes(), "binary data"), x)
    with pytest.raises(codec.TensorError, match=r"input 'x': binary data has 20 bytes, expected 24"):
        codec.decode_binary("x", "FP32", [2, 3], x.tobytes()[:20], "binary data")
