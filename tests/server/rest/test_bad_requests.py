"""Every bad request of the gRPC tests, over HTTP: Triton's HTTP status, ``{"error": ...}`` with
gRPC's message, and the server answering the next good request."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
from badrequests import HTTP_STATUS, bad_requests, zeros
from harness import Served, http_call, http_input, serving, triton_input
from inprocess import InProcessServer, in_process
from tritonclient.utils import InferenceServerException

LIMIT = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def server(repo_with_broken: Path) -> Iterator[InProcessServer]:
    with in_process(repo_with_broken, max_message_bytes=LIMIT) as served:
        yield served


@pytest.fixture()
def client(server: Served) -> Iterator[th.InferenceServerClient]:
    c = th.InferenceServerClient(server.http_address, network_timeout=60)
    yield c
    c.close()


def good(client: th.InferenceServerClient) -> None:
    x = np.zeros((1, 1, 32, 32), np.float32)
    assert client.infer("lenet5", [http_input(x)]).as_numpy("logits").shape == (1, 10)


def error(status: int, body: bytes) -> tuple[int, str]:
    document = json.loads(body)
    assert set(document) == {"error"}, document
    return status, document["error"]


@bad_requests
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_each_bad_request_gets_tritons_status_and_grpcs_message(
    server: Served,
    client: th.InferenceServerClient,
    model: str,
    version: str,
    inputs: list[tuple[str, tuple[int, ...], str]],
    code: str,
    message: str,
    binary: bool,
) -> None:
    with pytest.raises(InferenceServerException) as over_http:
        client.infer(model, [http_input(zeros(s, t), binary, n, t) for n, s, t in inputs], model_version=version)
    with (
        tc.InferenceServerClient(server.grpc_address) as grpc_client,
        pytest.raises(InferenceServerException) as over_grpc,
    ):
        grpc_client.infer(model, [triton_input(n, zeros(s, t), t) for n, s, t in inputs], model_version=version)
    assert over_http.value.status() == str(HTTP_STATUS[code])
    assert message in over_http.value.message() and over_http.value.message() == over_grpc.value.message()
    good(client)  # and the server answers the next good request


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"{not json", {}, "failed to parse the request JSON"),
        (b'{"inputs": 3}', {}, "expected an object with an 'inputs' array"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32", "data": [1.0]}]}),
         {}, "input 'input': data has 1 elements, expected 1024 for shape [1, 1, 32, 32]"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                 "data": ["x"] * 1024}]}), {}, "input 'input': data[0] is 'x', not a FP32 value"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                 "parameters": {"binary_data_size": 4096}}]}).encode() + b"\0" * 100,
         "header", "binary_data_size 4096 does not fit the 100 binary bytes left"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                 "parameters": {"binary_data_size": 4095}}]}).encode() + b"\0" * 4095,
         "header", "input 'input': binary data has 4095 bytes, expected 4096 for shape [1, 1, 32, 32] FP32"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP16",
                                 "data": [0] * 1024}]}), {},
         "input 'input': datatype FP16, model 'lenet5' expects FP32"),
        # BYTES as JSON strings, and 2 MiB of binary that are not even valid BYTES elements: refused
        # by the tensor's header (the datatype), before any element is decoded.
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "BYTES",
                                 "data": ["cat"] * 1024}]}), {},
         "input 'input': datatype BYTES, model 'lenet5' expects FP32"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "BYTES",
                                 "parameters": {"binary_data_size": 2 << 20}}]}).encode() + b"\xff" * (2 << 20),
         "header", "input 'input': datatype BYTES, model 'lenet5' expects FP32"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32", "data": [0] * 1024}],
                     "outputs": [{"name": "probabilities"}]}), {},
         "outputs: unknown output 'probabilities'; model 'lenet5' has ['logits']"),
        (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32", "data": [0] * 1024}],
                     "outputs": [{"name": "logits", "parameters": {"classification": 0}}]}), {},
         "outputs['logits'].parameters.classification: expected an integer >= 1"),
    ],
    ids=["not JSON", "no inputs array", "too few elements", "not numbers", "short binary",
         "binary size not the shape's", "wrong datatype", "BYTES as JSON", "BYTES in binary", "unknown output",
         "classification 0"],
)  # fmt: skip
def test_malformed_bodies_are_400_with_a_message_naming_the_field(
    server: Served, client: th.InferenceServerClient, body: bytes | str, headers: dict[str, str] | str,
    message: str,
) -> None:  # fmt: skip
    raw = body.encode() if isinstance(body, str) else body
    if headers == "header":  # the JSON's length, as the binary extension gives it
        headers = {"Inference-Header-Content-Length": str(raw.index(b"}]}") + 3)}
    assert isinstance(headers, dict)
    status, text = error(*http_call(server, "POST", "/v2/models/lenet5/infer", raw, headers))
    assert status == 400 and message in text, text
    good(client)


def test_a_body_over_the_limit_is_413(server: Served, client: th.InferenceServerClient) -> None:
    x = np.zeros((1100, 1, 32, 32), np.float32)  # 4.5 MB > 4 MiB
    with pytest.raises(InferenceServerException) as caught:
        client.infer("lenet5", [http_input(x)])
    assert caught.value.status() == "413"
    assert caught.value.message() == "request body larger than max_message_bytes 4,194,304 (--max-message-bytes)"
    good(client)


def test_readiness_unknown_paths_and_methods(server: Served) -> None:
    assert http_call(server, "GET", "/v2/models/broken/ready") == (400, b"")  # Triton: 400, no body
    assert error(*http_call(server, "GET", "/v2/models/nope/ready")) == (
        404,
        "model_name: unknown model 'nope'; this server has: alphago_policy, broken, cifar_resnet20, lenet5",
    )
    assert error(*http_call(server, "GET", "/v2/nothing/here")) == (404, "Not Found")
    assert error(*http_call(server, "GET", "/v2/models/lenet5/infer")) == (405, "Method Not Allowed")


def test_queued_bytes_and_concurrent_requests_are_bounded(small_repo: Path) -> None:
    with serving(small_repo, "--max-queue-bytes", "1KiB", "--max-concurrent-rpcs", "1", "--model", "lenet5") as proc:
        x = np.zeros((1, 1, 32, 32), np.float32)
        with th.InferenceServerClient(proc.http_address) as c, pytest.raises(InferenceServerException) as caught:
            c.infer("lenet5", [http_input(x)])
        assert caught.value.status() == "429"
        assert caught.value.message() == (
            "model 'lenet5': queue full (0 bytes waiting, this request 4,096 bytes, max_queue_bytes 1,024); retry later"
        )
        # A request whose body is still arriving holds the only slot: the next is refused.
        host, port = proc.http_address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=60) as slow:
            slow.sendall(b"POST /v2/repository/index HTTP/1.1\r\nHost: cnnserve\r\nContent-Length: 2\r\n\r\n{")
            deadline = time.monotonic() + 60
            while (answer := http_call(proc, "GET", "/v2"))[0] == 200:  # until the slow one is in progress
                assert time.monotonic() < deadline, "the slow request never took the slot"
                time.sleep(0.05)
            assert error(*answer) == (429, "concurrent request limit exceeded: 1 HTTP requests in progress "
                                           "(--max-concurrent-rpcs 1); retry later")  # fmt: skip
            assert http_call(proc, "GET", "/v2/health/ready") == (200, b"")  # probes are never refused
            slow.sendall(b"}")
            reply = slow.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 OK") and b'"name": "lenet5"' in reply, reply  # answered in full
        assert http_call(proc, "GET", "/v2")[0] == 200  # the slot is free again
