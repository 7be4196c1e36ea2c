"""REST's request parsing: orjson where it can, and exactly what the standard library reads and
says where it cannot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cnnserve.server import errors
from cnnserve.server.rest.tensors import decode, parse_request


def _body(data: object, datatype: str = "FP32", shape: tuple[int, ...] = (2,)) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": list(shape), "data": data}]}


def test_json_data_decodes_to_the_values_sent() -> None:
    x = np.random.default_rng(0).random((1, 3, 4), dtype=np.float32)
    document, (tensor,) = parse_request(json.dumps(_body(x.reshape(-1).tolist(), shape=x.shape)).encode(), None)
    assert document["inputs"][0]["name"] == "x"
    decoded = decode(tensor)
    assert decoded.dtype == np.float32 and decoded.shape == x.shape
    np.testing.assert_array_equal(decoded, x)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # orjson refuses these; the standard library reads them, so the server does too.
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [NaN, Infinity]}]}',
            [math.nan, math.inf],
        ),
        (json.dumps(_body([1.5, 2])).encode("utf-16"), [1.5, 2.0]),
    ],
)
def test_what_the_standard_library_reads_is_read(text: bytes, expected: list[float]) -> None:
    _, (tensor,) = parse_request(text, None)
    np.testing.assert_array_equal(decode(tensor), np.array(expected, np.float32))


def test_an_integer_beyond_64_bits_gets_the_range_message() -> None:
    _, (tensor,) = parse_request(json.dumps(_body([2**70, 1], "INT64")).encode(), None)
    with pytest.raises(errors.InvalidArgument, match=r"input 'x': data holds a value outside INT64's range"):
        decode(tensor)


@pytest.mark.parametrize("text", [b'{"inputs": [', b"{'inputs': []}", b'{"inputs": []} x', b"\xff\xfe\x00"])
def test_bad_json_is_worded_as_the_standard_library_words_it(text: bytes) -> None:
    try:
        json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        expected = f"failed to parse the request JSON: {exc}"
    with pytest.raises(errors.InvalidArgument) as raised:
        parse_request(text, None)
    assert str(raised.value) == expected


@pytest.mark.parametrize(
    ("data", "datatype", "message"),
    [
        ([1.0, True], "FP32", "data[1] is True, not a FP32 value"),
        ([1, 2.5], "INT32", "data[1] is 2.5, not a INT32 value"),
        ([True, 1], "BOOL", "data[1] is 1, not a BOOL value"),
        ([1.0, "2"], "FP32", "data[1] is '2', not a FP32 value"),
    ],
)
def test_a_wrong_element_is_named_by_its_index(data: list[object], datatype: str, message: str) -> None:
    _, (tensor,) = parse_request(json.dumps(_body(data, datatype)).encode(), None)
    with pytest.raises(errors.InvalidArgument, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode(tensor)
