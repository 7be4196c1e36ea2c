"""Wire-level fuzzing of a real server: over ten thousand generated and mutated gRPC requests
across ModelInfer, Classify and Policy (wrong types, huge and negative dimensions, truncated raw
bytes, mismatched element counts, unknown models and versions, absurd top-k, SGF bombs), many in
flight at once, and a few hundred mutated REST bodies.

Every call must end with a status the README documents for bad input (README, "Errors"): never
UNKNOWN or INTERNAL, never a hang; after every hundred fuzz requests a good LeNet-5 request must
still be answered as ONNX Runtime answers it, and at the end the server must stop cleanly on
SIGTERM (:func:`harness.serving` checks its exit status). The generator is a seeded
:class:`random.Random` (the in-process properties in ``test_parsers.py`` use Hypothesis; here the
server is the thing under test and a fixed seed keeps a CI run reproducible).

Fuzz tests live in this folder of their own rather than mirroring the packages: they cross them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
from harness import ServerProcess, ort_run, serving
from imagefiles import encode, png_claiming, random_rgb

from cnnserve.generated.cnnserve.v1 import service_pb2 as cs
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as cs_grpc
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc

SEED = 16
ROUNDS = 101  # of 100 fuzz requests each, then one good request
PER_ROUND = 100
HTTP_BODIES = 300
# What bad input may get (README, "Errors"): the server's own statuses for the caller's mistakes
# and for its limits. No model of the repository is unready, so UNAVAILABLE would be a bug too.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED}  # fmt: skip
ALLOWED_HTTP = {200, 400, 404, 413, 429}

DATA = Path(__file__).resolve().parents[1] / "data"
SGF_GAME = (DATA / "gnugo-selfplay.sgf").read_text(encoding="utf-8")
MODELS = ["lenet5", "cifar_resnet20", "alphago_policy"]
ITEM_SHAPES = {"lenet5": [1, 32, 32], "cifar_resnet20": [3, 32, 32], "alphago_policy": [48, 19, 19]}
INPUT_NAMES = {"lenet5": "input", "cifar_resnet20": "input", "alphago_policy": "planes"}
IMAGES = [
    encode(random_rgb(40, 30)),
    encode(random_rgb(33, 40), "JPEG", quality=85),
    encode(random_rgb(32, 32).convert("L")),
    encode(random_rgb(20, 24).convert("P")),
    encode(random_rgb(16, 16).convert("RGBA")),
    png_claiming(100_000, 100_000),
]


def mutate(data: bytes, rng: random.Random, edits: int = 4) -> bytes:
    """Flip, cut, insert and delete bytes of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, edits)):
        i = rng.randrange(len(out)) if out else 0
        op = rng.choice(["flip", "cut", "insert", "delete"])
        if op == "flip" and out:
            out[i] = rng.randrange(256)
        elif op == "cut":
            del out[i:]
        elif op == "insert":
            out[i:i] = rng.randbytes(rng.randint(1, 8))
        else:
            del out[i : i + rng.randint(1, 32)]
    return bytes(out)


# -- ModelInfer ------------------------------------------------------------------------------------


def infer_request(rng: random.Random) -> pb.ModelInferRequest:
    model = rng.choice(MODELS) if rng.random() < 0.9 else rng.choice(["nope", "", "x" * 5000, "lenet5\0", "../lenet5"])
    version = rng.choice(["", "1"]) if rng.random() < 0.9 else rng.choice(["7", "-1", "abc", "9" * 40])
    item = list(ITEM_SHAPES.get(model, [1, 32, 32]))
    batch = rng.choice([1, 1, 2, 4, 0, 257, -1])
    shape = [batch, *item]
    how = rng.choice(["good", "good", "good", "rank", "negative", "huge", "huge-product", "dims", "wildcard", "empty",
                      "many-dims"])  # fmt: skip
    if how == "rank":
        shape = shape[: rng.randint(0, len(shape) - 1)] if rng.random() < 0.5 else [*shape, 1]
    elif how == "negative":
        shape[rng.randrange(len(shape))] = rng.choice([-1, -2, -(2**31), -(2**63)])
    elif how == "huge":
        shape[rng.randrange(len(shape))] = rng.choice([2**31, 2**40, 2**62, 2**63 - 1])
    elif how == "huge-product":
        shape = [2**20, 2**20, 2**20, 2**20]
    elif how == "dims":
        shape[rng.randrange(1, len(shape))] += rng.choice([-1, 1, 7])
    elif how == "wildcard":
        shape[0] = -1
    elif how == "empty":
        shape = []
    elif how == "many-dims":
        shape = [1] * rng.choice([65, 100, 1000])
    datatype = rng.choice(["FP32"] * 6 + ["FP64", "FP16", "INT8", "UINT8", "INT64", "BOOL", "BYTES", "BF16", "fp32",
                                          "FOO", ""])  # fmt: skip
    name = INPUT_NAMES.get(model, "input") if rng.random() < 0.85 else rng.choice(["pixels", "", "input\0", "x" * 300])
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=rng.choice(["", "fuzz"]))
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    count = 1
    for d in shape:
        count *= max(d, 0)
    itemsize = {"FP64": 8, "INT64": 8, "FP16": 2, "BF16": 2, "INT8": 1, "UINT8": 1, "BOOL": 1}.get(datatype, 4)
    size = count * itemsize if 0 <= count * itemsize <= 1 << 20 else rng.randint(0, 4096)
    data = rng.choice(["raw", "raw", "raw", "truncated", "extended", "contents", "contents-wrong", "both", "none",
                       "extra-raw", "nan"])  # fmt: skip
    if data == "raw":
        request.raw_input_contents.append(rng.randbytes(size))
    elif data == "nan":
        request.raw_input_contents.append(np.full(size // 4, np.nan, np.float32).tobytes())
    elif data == "truncated":
        request.raw_input_contents.append(rng.randbytes(max(size - rng.randint(1, 64), 0)))
    elif data == "extended":
        request.raw_input_contents.append(rng.randbytes(size + rng.randint(1, 64)))
    elif data in ("contents", "both"):
        n = count if count <= 50_000 else rng.randint(0, 100)
        tensor.contents.fp32_contents.extend(np.random.default_rng(rng.randrange(2**32)).random(n).tolist())
        if data == "both":
            request.raw_input_contents.append(rng.randbytes(size))
    elif data == "contents-wrong":
        field = rng.choice(["int_contents", "int64_contents", "uint64_contents", "bool_contents", "bytes_contents"])
        values: list[Any] = {"bool_contents": [True, False], "bytes_contents": [b"ab", b""]}.get(field, [1, 2**31 - 1])
        getattr(tensor.contents, field).extend(values * rng.randint(0, 600))
    elif data == "extra-raw":
        request.raw_input_contents.extend([rng.randbytes(size), b"\0" * 4])
    if rng.random() < 0.1:  # the same input twice, or a second one the model does not have
        request.inputs.add().CopyFrom(tensor if rng.random() < 0.5 else pb.ModelInferRequest.InferInputTensor(
            name="extra", datatype="FP32", shape=[1]))  # fmt: skip
        if request.raw_input_contents:
            request.raw_input_contents.append(rng.randbytes(4))
    if rng.random() < 0.15:
        request.outputs.add(name=rng.choice(["output", "logits", "nope", ""]))
    if rng.random() < 0.05:
        request.parameters["binary_data_output"].bool_param = True
        request.parameters["priority"].int64_param = -5
        request.parameters["timeout"].int64_param = rng.choice([0, -1, 2**62])
    return request


# -- Classify and Policy ---------------------------------------------------------------------------


def classify_request(rng: random.Random) -> cs.ClassifyRequest:
    model = rng.choice(["lenet5", "cifar_resnet20"] * 5 + ["alphago_policy", "nope", ""])
    how = rng.choice(["good", "mutated", "mutated", "random", "empty", "many", "bomb", "blank"])
    if how == "good":
        images = [rng.choice(IMAGES[:5]) for _ in range(rng.randint(1, 3))]
    elif how == "mutated":
        images = [mutate(rng.choice(IMAGES[:5]), rng) for _ in range(rng.randint(1, 3))]
    elif how == "random":
        images = [rng.randbytes(rng.randint(0, 256))]
    elif how == "empty":
        images = []
    elif how == "many":
        images = [IMAGES[0]] * rng.choice([64, 65, 200])
    elif how == "bomb":
        images = [IMAGES[5], IMAGES[0]]
    else:
        images = [b""]
    top_k = rng.choice([0, 1, 1, 5, 10, 11, 1000, 1001, 2**32 - 1])
    version = rng.choice(["", "", "", "", "", "", "1", "2", "x"])
    return cs.ClassifyRequest(model_name=model, model_version=version, images=images, top_k=top_k)


BOARD = "\n".join("".join(random.Random(row).choice("...XO") for _ in range(19)) for row in range(19))


def policy_request(rng: random.Random) -> cs.PolicyRequest:
    model = rng.choice(["alphago_policy"] * 10 + ["lenet5", "nope", ""])
    request = cs.PolicyRequest(model_name=model, model_version=rng.choice(["", "", "", "", "", "1", "3"]))
    how = rng.choice(["board", "board-mutated", "sgf", "sgf-mutated", "sgf-mutated", "bomb", "none", "text"])
    if how == "board":
        request.board = BOARD
    elif how == "board-mutated":
        request.board = mutate(BOARD.encode(), rng).decode("utf-8", "replace")
    elif how == "sgf":
        request.sgf = SGF_GAME
    elif how == "sgf-mutated":
        request.sgf = mutate(SGF_GAME.encode(), rng, edits=3).decode("utf-8", "replace")
    elif how == "text":
        request.sgf = "".join(rng.choice("();[]\\BWAEaszt: \n") for _ in range(rng.randint(0, 80)))
    elif how == "bomb":
        request.sgf = rng.choice([
            "(;" * 50_000,
            "(;B[aa]" * 20_000 + ")" * 20_000,
            "(;" + ";B[tt]" * 6000 + ")",
            "(;" + ";B[tt];W[tt]" * 2400 + ")",
            "(;AB" + "[aa:ss]" * 20_000 + ")",
            "(;C[" + "x" * (1 << 20) + "])",
            "(;SZ[19]" + "(;B[aa])" * 10_000 + ")",
            "(;HA[9999])",
        ])  # fmt: skip
    if rng.random() < 0.5:
        request.move_number = rng.choice([0, 1, 30, 120, 121, 5000, 2**32 - 1])
    request.to_move = rng.choice([0, 0, 1, 2, 3, 99])
    request.top_k = rng.choice([0, 1, 5, 361, 362, 2**32 - 1])
    return request


# -- the run ---------------------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.codes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.wrong: list[str] = []

    def note(self, rpc: str, code: grpc.StatusCode, details: str, request: str) -> None:
        self.codes[(rpc, code.name)] += 1
        if code not in ALLOWED:
            self.wrong.append(f"{rpc} -> {code.name}: {details[:300]!r} for {request[:300]!r}")


async def fuzz(address: str, reference: Callable[[np.ndarray], np.ndarray], tally: Tally) -> int:
    rng = random.Random(SEED)
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        infer = pb_grpc.GRPCInferenceServiceStub(channel)
        cnn = cs_grpc.CnnServeStub(channel)
        rpcs: dict[str, tuple[Callable[[Any], Awaitable[Any]], Callable[[random.Random], Any]]] = {
            "ModelInfer": (lambda r: infer.ModelInfer(r, timeout=60), infer_request),
            "Classify": (lambda r: cnn.Classify(r, timeout=60), classify_request),
            "Policy": (lambda r: cnn.Policy(r, timeout=60), policy_request),
        }

        async def one(rpc: str, request: Any) -> None:
            try:
                await rpcs[rpc][0](request)
                tally.note(rpc, grpc.StatusCode.OK, "", "")
            except grpc.aio.AioRpcError as exc:
                tally.note(rpc, exc.code(), exc.details() or "", str(request))

        good_rng = np.random.default_rng(SEED)
        sent = 0
        for _ in range(ROUNDS):
            batch = []
            for _ in range(PER_ROUND):
                rpc = rng.choices(list(rpcs), weights=[5, 2, 3])[0]
                batch.append(one(rpc, rpcs[rpc][1](rng)))
            await asyncio.gather(*batch)
            sent += len(batch)
            # A good request after every hundred: answered, and answered right.
            x = good_rng.random((1, 1, 32, 32), dtype=np.float32)
            good = pb.ModelInferRequest(model_name="lenet5", raw_input_contents=[x.tobytes()])
            good.inputs.add(name="input", datatype="FP32", shape=[1, 1, 32, 32])
            reply = await infer.ModelInfer(good, timeout=60)
            got = np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(reply.outputs[0].shape)
            np.testing.assert_allclose(got, reference(x), rtol=1e-4, atol=1e-5)
    return sent


def mutated_bodies(rng: random.Random) -> list[tuple[bytes, dict[str, str]]]:
    x = np.zeros((1, 1, 32, 32), np.float32)
    as_json = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                      "data": x.ravel().tolist()}]}).encode()  # fmt: skip
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()  # fmt: skip
    bodies: list[tuple[bytes, dict[str, str]]] = []
    for _ in range(HTTP_BODIES):
        if rng.random() < 0.5:
            bodies.append((mutate(as_json, rng), {"Content-Type": "application/json"}))
            continue
        body = mutate(header, rng, edits=2) + x.tobytes()[: rng.choice([x.nbytes, x.nbytes, 100, 0])]
        length = rng.choice([str(len(header)), str(len(header)), "-1", "abc", str(len(body) + 1), "99" * 20])
        bodies.append((body, {"Inference-Header-Content-Length": length}))
    bodies.append((json.dumps({"inputs": [{"name": "input", "shape": [2**40, 1, 32, 32], "datatype": "FP32",
                                           "data": [0.0]}]}).encode(), {}))  # fmt: skip
    return bodies


async def fuzz_http(address: str) -> collections.Counter[int]:
    statuses: collections.Counter[int] = collections.Counter()
    bad: list[str] = []
    semaphore = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as session:

        async def one(body: bytes, headers: dict[str, str]) -> None:
            async with semaphore, session.post(f"http://{address}/v2/models/lenet5/infer", data=body,
                                               headers=headers) as reply:  # fmt: skip
                statuses[reply.status] += 1
                text = await reply.read()
                if reply.status not in ALLOWED_HTTP:
                    bad.append(f"{reply.status} {text[:200]!r} for {body[:120]!r}")
                elif reply.status != 200:
                    document = json.loads(text)
                    if not isinstance(document, dict) or not isinstance(document.get("error"), str):
                        bad.append(f"{reply.status} without an error message: {text[:200]!r}")

        await asyncio.gather(*(one(body, headers) for body, headers in mutated_bodies(random.Random(SEED))))
    assert not bad, "\n".join(bad[:20])
    return statuses


def test_ten_thousand_bad_requests_get_statuses_and_the_server_serves_on(small_repo: Path) -> None:
    started = time.monotonic()
    tally = Tally()
    with serving(small_repo, "--max-queue-delay-us", "0") as proc:
        sent = asyncio.run(fuzz(proc.grpc_address, lambda x: ort_run(small_repo, "lenet5", x), tally))
        statuses = asyncio.run(fuzz_http(proc.http_address))
        assert proc.process.poll() is None, proc.output
        check_log(proc)
    print(f"\n{sent} gRPC fuzz requests and {sum(statuses.values())} HTTP bodies in {time.monotonic() - started:.1f}s")
    print("gRPC:", dict(sorted(tally.codes.items())))
    print("HTTP:", dict(sorted(statuses.items())))
    assert sent >= 10_000
    assert not tally.wrong, f"{len(tally.wrong)} calls got a status outside {sorted(c.name for c in ALLOWED)}:\n" + (
        "\n".join(tally.wrong[:20])
    )
    # Positive controls: the fuzz reached past the front door of every RPC, and was mostly refused.
    for rpc in ("ModelInfer", "Classify", "Policy"):
        assert tally.codes[(rpc, "OK")] > 0 and tally.codes[(rpc, "INVALID_ARGUMENT")] > 0, tally.codes
    assert tally.codes[("ModelInfer", "NOT_FOUND")] > 0, tally.codes
    assert statuses[400] > 0, statuses


def check_log(proc: ServerProcess) -> None:
    """The server logged no unexpected error (a ServingError is expected and not logged)."""
    unexpected = [line for line in proc.lines if "unexpected error" in line or "Traceback" in line]
    assert not unexpected, proc.output[-5000:]
