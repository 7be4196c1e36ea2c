"""Property-based fuzzing (Hypothesis) of the parsers a request reaches: for any input they either
succeed or raise the project's own error for that input, never an IndexError, KeyError,
struct.error, OverflowError, MemoryError or anything else a server would turn into INTERNAL; and
what a success returns is what was asked for (the declared shape and datatype, the same bytes back,
a coordinate that writes back as it was read, a setting that reads back as its text says).

Fuzz tests live in this folder of their own rather than mirroring the packages (as the other test
folders do): each file crosses several packages, and CI can run or skip them as one.

Every property is derandomized and keeps no example database, so a CI run is reproducible and
leaves no ``.hypothesis/`` folder behind; the example counts keep the whole file to seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagefiles import encode, png_claiming, random_rgb
from PIL import Image

from cnnserve import codec, images
from cnnserve.datatypes import DATATYPES
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.go import coords, position, sgf
from cnnserve.go.board import BLACK, WHITE
from cnnserve.server import errors
from cnnserve.server.rest import tensors
from cnnserve.server.services.policy import PositionQuery, read_position
from cnnserve.server.settings import OPTIONS, Settings, SettingsError, add_arguments

DATA = Path(__file__).resolve().parents[1] / "data"
SGF_GAME = (DATA / "gnugo-selfplay.sgf").read_text(encoding="utf-8")


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Reproducible, bounded, database-free Hypothesis settings."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


REFUSED = object()
"""What :func:`only` returns when the call raised the error it may raise."""


def only(expected: type[BaseException] | tuple[type[BaseException], ...], call: Callable[[], Any]) -> Any:
    """Run ``call``; it may succeed (its result is returned, for the property to check) or raise
    ``expected`` (:data:`REFUSED` is returned), nothing else. Numpy's RuntimeWarnings (a float
    cast overflowing to inf) are warnings, not errors, for a server; pytest's ``filterwarnings =
    error`` must not turn them into failures here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return call()
        except expected:
            return REFUSED


def assert_same_bytes(array: np.ndarray, datatype: str, raw: bytes) -> None:
    """The bytes a tensor was decoded from, back: raw numbers as they came, BYTES elements packed
    as they came, BOOL bytes as true where they were not zero."""
    if datatype == "BYTES":
        assert codec.pack_bytes(array) == raw
    elif datatype == "BOOL":
        assert array.reshape(-1).tolist() == [byte != 0 for byte in raw]
    else:
        assert array.tobytes() == raw


def check_decoded(array: np.ndarray, datatype: str, shape: Sequence[int]) -> None:
    """A decoded tensor is what its header declared: that shape, that datatype's numpy type."""
    assert array.shape == tuple(shape)
    assert array.dtype == DATATYPES[datatype].dtype


# -- strategies ------------------------------------------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
dimension = st.one_of(st.integers(-3, 6), st.integers(0, 2**20), INT64)
shapes = st.lists(dimension, max_size=6) | st.lists(st.integers(0, 1), min_size=60, max_size=70)
datatypes = st.one_of(st.sampled_from(sorted(DATATYPES)), st.text(max_size=8))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=40)


@st.composite
def raw_for(draw: st.DrawFn, datatype: str, shape: list[int]) -> bytes:
    """Raw bytes that often fit the shape (so decoding gets past the length check), else not."""
    count = 1
    for d in shape:
        count *= max(d, 0)
    spec = DATATYPES.get(datatype)
    if spec is not None and datatype != "BYTES" and 0 <= count * spec.dtype.itemsize <= 4096 and draw(st.booleans()):
        size = count * spec.dtype.itemsize + draw(st.sampled_from([0, 0, 0, -1, 1]))
        return draw(st.binary(min_size=max(size, 0), max_size=max(size, 0)))
    if datatype == "BYTES" and 0 <= count <= 64 and draw(st.booleans()):
        items = draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count))
        packed = codec.pack_bytes(items) if items else b""
        cut = draw(st.integers(0, len(packed)))
        return packed if draw(st.booleans()) else packed[:cut] + draw(st.binary(max_size=6))
    return draw(st.binary(max_size=64))


# -- the V2 tensor codec: TensorError only ---------------------------------------------------------


@fuzz(600)
@given(st.data(), datatypes, shapes)
def test_decode_binary_raises_only_tensor_error(data: st.DataObject, datatype: str, shape: list[int]) -> None:
    raw = data.draw(raw_for(datatype, shape))
    decoded = only(codec.TensorError, lambda: codec.decode_binary("x", datatype, shape, raw, "binary data"))
    if decoded is not REFUSED:
        check_decoded(decoded, datatype, shape)
        assert_same_bytes(decoded, datatype, raw)


@fuzz(600)
@given(datatypes, shapes, st.lists(json_values, max_size=12))
def test_decode_values_raises_only_tensor_error(datatype: str, shape: list[int], values: list[object]) -> None:
    decoded = only(codec.TensorError, lambda: codec.decode_values("x", datatype, shape, values, "data"))
    if decoded is not REFUSED:
        check_decoded(decoded, datatype, shape)


@fuzz(300)
@given(st.sampled_from(sorted(DATATYPES)), st.lists(st.integers(0, 3), max_size=3), st.data())
def test_decode_values_of_the_right_count_raises_only_tensor_error(datatype: str, shape: list[int],
                                                                   data: st.DataObject) -> None:  # fmt: skip
    count = 1
    for d in shape:
        count *= d
    values = data.draw(st.lists(json_scalars, min_size=count, max_size=count))
    decoded = only(codec.TensorError, lambda: codec.decode_values("x", datatype, shape, values, "data"))
    if decoded is not REFUSED:
        check_decoded(decoded, datatype, shape)
        if datatype not in ("BYTES", "BOOL", "FP16", "FP32", "FP64"):  # integers: exactly the values sent
            assert decoded.reshape(-1).tolist() == values


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=draw(st.text(max_size=6)))
    raws: list[bytes] = []
    for _ in range(draw(st.integers(0, 3))):
        datatype = draw(datatypes)
        shape = draw(st.lists(dimension, max_size=5))
        tensor = request.inputs.add(name=draw(st.sampled_from(["input", "planes", "x", ""])), datatype=datatype,
                                    shape=shape)  # fmt: skip
        for field in draw(st.lists(st.sampled_from(sorted(codec.CONTENTS_FIELDS)), max_size=2, unique=True)):
            values = {
                "bool_contents": st.booleans(),
                "int_contents": st.integers(-(2**31), 2**31 - 1),
                "int64_contents": INT64,
                "uint_contents": st.integers(0, 2**32 - 1),
                "uint64_contents": st.integers(0, 2**64 - 1),
                "fp32_contents": st.floats(width=32),
                "fp64_contents": st.floats(),
                "bytes_contents": st.binary(max_size=6),
            }[field]
            getattr(tensor.contents, field).extend(draw(st.lists(values, max_size=10)))
        raws.append(draw(raw_for(datatype, shape)))
    mode = draw(st.sampled_from(["raw", "contents", "short", "long"]))
    if mode == "raw":
        request.raw_input_contents.extend(raws)
    elif mode == "short":
        request.raw_input_contents.extend(raws[:-1])
    elif mode == "long":
        request.raw_input_contents.extend([*raws, b"\0\0\0\0"])
    return request


@fuzz(600)
@given(infer_requests())
def test_decode_request_inputs_raises_only_tensor_error(request: pb.ModelInferRequest) -> None:
    decoded = only(codec.TensorError, lambda: codec.decode_request_inputs(request))
    if decoded is not REFUSED:
        assert list(decoded) == [tensor.name for tensor in request.inputs]
        for tensor in request.inputs:
            check_decoded(decoded[tensor.name], tensor.datatype, tensor.shape)


# -- REST bodies: InvalidArgument only -------------------------------------------------------------


@st.composite
def rest_bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A REST inference body and its Inference-Header-Content-Length: well formed and then
    mutated, or random bytes."""
    kind = draw(st.sampled_from(["document", "document", "document", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200)), draw(st.none() | st.text(max_size=6))
    inputs: list[Any] = []
    binary = b""
    for _ in range(draw(st.integers(0, 3))):
        datatype = draw(datatypes)
        shape = draw(st.lists(dimension, max_size=4) | json_values)
        tensor: dict[str, Any] = {"name": draw(st.sampled_from(["input", "x"]) | json_scalars),
                                  "datatype": draw(st.just(datatype) | json_scalars), "shape": shape}  # fmt: skip
        if draw(st.booleans()):
            data = draw(raw_for(datatype, shape if isinstance(shape, list) and all(
                isinstance(d, int) for d in shape) else []))  # fmt: skip
            tensor["parameters"] = {"binary_data_size": draw(st.just(len(data)) | json_values)}
            binary += data
        else:
            tensor["data"] = draw(st.lists(json_values, max_size=8) | json_values)
        if draw(st.integers(0, 9)) == 0:
            tensor = draw(json_values)  # not an object at all
        inputs.append(tensor)
    document: Any = {"inputs": inputs, "outputs": draw(st.lists(json_values, max_size=2))}
    if draw(st.integers(0, 9)) == 0:
        document = draw(json_values)
    header = json.dumps(document).encode()
    body = header + binary
    if draw(st.integers(0, 4)) == 0:  # truncate or corrupt somewhere
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=4)) + body[cut + 1 :]
    length: str | None = None if not binary and draw(st.booleans()) else str(len(header))
    if draw(st.integers(0, 5)) == 0:
        length = draw(st.text(max_size=8) | st.integers(-(2**70), 2**70).map(str))
    return body, length


@fuzz(800)
@given(rest_bodies())
def test_rest_parse_and_decode_raise_only_invalid_argument(body_and_length: tuple[bytes, str | None]) -> None:
    body, length = body_and_length

    def parse_and_decode() -> list[tuple[tensors.RestInput, np.ndarray]]:
        _, inputs = tensors.parse_request(body, length)
        return [(tensor, tensors.decode(tensor)) for tensor in inputs]

    decoded = only(errors.InvalidArgument, parse_and_decode)
    if decoded is not REFUSED:
        for tensor, array in decoded:
            check_decoded(array, tensor.datatype, tensor.shape)
            if tensor.binary is not None:
                assert_same_bytes(array, tensor.datatype, tensor.binary)


# -- Go: SgfError, PositionError, CoordinateError; the Policy request path InvalidArgument -----------

SGF_TOKENS = ["(", ")", ";", "[", "]", "\\", "B", "W", "AB", "AW", "AE", "PL", "HA", "SZ", "GM", "KM", "C", "aa",
              "ss", "tt", "zz", "dd:pp", "19", "2", "9", "1", " ", "\n", "ab", "", ":", "-1", "99"]  # fmt: skip


@st.composite
def sgf_texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["tokens", "mutated", "bomb", "text"]))
    if kind == "tokens":
        return "".join(draw(st.lists(st.sampled_from(SGF_TOKENS), max_size=60)))
    if kind == "text":
        return draw(st.text(max_size=80))
    if kind == "bomb":
        depth = draw(st.sampled_from([100, 1000, 5000, 50_000]))
        shape = draw(st.sampled_from(["nest", "nest-closed", "nodes", "values", "setup"]))
        if shape == "nest":
            return "(;" * depth
        if shape == "nest-closed":
            return "(;B[aa]" * depth + ")" * depth
        if shape == "nodes":
            return "(;" + ";B[tt]" * depth + ")"
        if shape == "values":
            return "(;AB" + "[aa:ss]" * depth + ")"
        return "(;" + "AB[aa:ss]AE[aa:ss]" * depth + ")"
    text = SGF_GAME
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + draw(st.sampled_from(SGF_TOKENS) | st.text(max_size=3)) + text[j:]
    return text


move_numbers = st.none() | st.integers(-5, 200) | st.integers(-(2**40), 2**40)
colors = st.none() | st.sampled_from([BLACK, WHITE])


@fuzz(500)
@given(sgf_texts())
def test_sgf_parse_raises_only_sgf_error(text: str) -> None:
    only(sgf.SgfError, lambda: sgf.parse(text))


@fuzz(300)
@given(sgf_texts(), move_numbers, colors)
def test_position_from_sgf_raises_only_position_error(text: str, move_number: int | None, to_move: int | None) -> None:
    only(position.PositionError, lambda: position.from_sgf(text, move_number, to_move))


@st.composite
def board_texts(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=60))
    rows = draw(st.integers(17, 21))
    lines = ["".join(draw(st.lists(st.sampled_from(".XOxo.. \t?"), min_size=17, max_size=21))) for _ in range(rows)]
    return draw(st.sampled_from(["", "\n", "\r\n"])) + "\n".join(lines) + draw(st.sampled_from(["", "\n", " \n"]))


@fuzz(250)
@given(board_texts(), st.sampled_from([BLACK, WHITE]))
def test_position_from_text_raises_only_position_error(text: str, to_move: int) -> None:
    read = only(position.PositionError, lambda: position.from_text(text, to_move))
    if read is not REFUSED:
        assert (read.to_move, read.move_number) == (to_move, 0)
        # The board writes back as the text drew it, stone for stone.
        drawn = [line.replace(" ", "").replace("\t", "").upper() for line in text.strip("\r\n").splitlines()]
        assert read.board.to_text().splitlines() == drawn


@fuzz(300)
@given(st.text(max_size=5) | st.sampled_from(["D4", " q16", "t19", "a01", "pass", "dd", "sa", "tt", ""]))
def test_coordinates_raise_only_coordinate_error(text: str) -> None:
    gtp = only(coords.CoordinateError, lambda: coords.from_gtp(text))
    if gtp is not REFUSED:
        vertex = text.strip().upper()
        assert coords.to_gtp(gtp) == ("pass" if gtp is None else vertex[0] + str(int(vertex[1:])))
        assert coords.from_gtp(coords.to_gtp(gtp)) == gtp
    point = only(coords.CoordinateError, lambda: coords.from_sgf(text))
    if point is not REFUSED:
        assert coords.to_sgf(point) == ("" if point is None else text)


@fuzz(200)
@given(st.one_of(board_texts().map(lambda b: ("board", b)), sgf_texts().map(lambda s: ("sgf", s)),
                 st.just(("none", ""))), move_numbers, colors)  # fmt: skip
def test_policy_read_position_raises_only_invalid_argument(source: tuple[str, str], move_number: int | None,
                                                           to_move: int | None) -> None:  # fmt: skip
    kind, text = source
    query = PositionQuery(board=text if kind == "board" else None, sgf=text if kind == "sgf" else None,
                          move_number=move_number, to_move=to_move)  # fmt: skip
    only(errors.InvalidArgument, lambda: read_position(query))


# -- images: ImageError only ----------------------------------------------------------------------

SEEDS = [
    encode(random_rgb(9, 7)),
    encode(random_rgb(9, 7), "JPEG", quality=80),
    encode(random_rgb(8, 8).convert("P")),
    encode(random_rgb(8, 8).convert("L"), "JPEG"),
    encode(random_rgb(6, 5).convert("RGBA")),
    encode(random_rgb(6, 5), "JPEG", progressive=True),
    png_claiming(100_000, 100_000),
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
]


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "header"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "header":  # the PNG width/height or the JPEG's early bytes
            j = draw(st.integers(0, min(len(data), 40)))
            data[j : j + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


@fuzz(600)
@given(image_bytes(), st.sampled_from([1, 64, 50_000_000]), st.sampled_from(["RGB", "L"]))
def test_image_decode_raises_only_image_error(data: bytes, max_pixels: int, color: str) -> None:
    # Pillow's own bomb warning (over half its limit) is a warning; the server checks the pixel count itself.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        only(images.ImageError, lambda: images.decode(data, 0, max_pixels, color))


@fuzz(200)
@given(image_bytes())
def test_image_pipeline_raises_only_image_error(data: bytes) -> None:
    pipeline = images.ImagePipeline.from_config(
        {"resize": 8, "crop": 6, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "FP32"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        only(images.ImageError, lambda: pipeline(data, 3, 1_000_000))


# -- settings: SettingsError; flags: argparse's refusal or SettingsError ----------------------------

VARIABLES = [option.variable for option in OPTIONS]
FLAGS = [option.flag for option in OPTIONS]
setting_texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["auto", "0", "-1", "1", "65536", "1KiB", "2GiB", "3 GiB", "1_000", "on", "off", "explicit",
                     "poll", "none", "*", ",", "lenet5,vgg16", "nan", "inf", "-0.5", "1e9", "9" * 5000]),
    st.integers(-(2**70), 2**70).map(str),
)  # fmt: skip


@fuzz(500)
@given(st.dictionaries(st.sampled_from(VARIABLES) | st.text(max_size=6), setting_texts, max_size=6))
def test_settings_from_env_raises_only_settings_error(environ: dict[str, str]) -> None:
    read = only(SettingsError, lambda: Settings.from_env(environ))
    if read is not REFUSED:
        for option in OPTIONS:  # each variable given reads back as its text says, the rest default
            text = environ.get(option.variable, "")
            expected = option.convert(text) if text.strip() else getattr(Settings(), option.field)
            assert getattr(read, option.field) == expected


class Refused(Exception):
    """argparse's refusal of a command line (instead of its usage message and SystemExit)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise Refused(message)


@fuzz(400)
@given(st.lists(st.tuples(st.sampled_from(FLAGS), setting_texts), max_size=5))
def test_settings_flags_raise_only_argparse_refusal_or_settings_error(flags: list[tuple[str, str]]) -> None:
    parser = Parser(exit_on_error=False)
    add_arguments(parser)
    argv = [f"{flag}={text}" for flag, text in flags]

    def parse() -> None:
        Settings.from_args(parser.parse_args(argv), environ={})

    only((Refused, argparse.ArgumentError, SettingsError), parse)


def test_the_seeds_are_what_they_claim() -> None:
    """Positive control: unmutated seeds decode, so the image properties reach past the header."""
    for data in SEEDS[:6]:
        assert images.decode(data, 0, 50_000_000, "RGB").mode == "RGB"
    with pytest.raises(images.ImageError, match="over max_image_pixels"):
        images.decode(SEEDS[6], 0, 50_000_000, "RGB")
    assert position.from_sgf(SGF_GAME).move_number == 120
    assert Image.open(io.BytesIO(SEEDS[1])).format == "JPEG"
