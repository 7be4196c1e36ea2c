"""Restricted groups of protocols against a real server, as Triton has them: each group with and
without its header, over gRPC (tritonclient's ``headers=``, our own stubs for cnnserve.v1) and over
HTTP; the key never in the server's output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from harness import ServerProcess, cnnserve, http_call, serving, triton_input
from tritonclient.utils import InferenceServerException

from cnnserve.generated.cnnserve.v1 import service_pb2 as v1_pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as v1_pb_grpc

ADMIN, INFER = "s3cret-admin-value", "infer-value-42"
X = np.zeros((1, 1, 32, 32), np.float32)


@pytest.fixture(scope="module")
def server(small_repo: Path) -> Iterator[ServerProcess]:
    with serving(small_repo, "--model", "lenet5", "--model", "alphago_policy",
                 "--grpc-restricted-protocol", f"model-repository,statistics,logging:admin-key={ADMIN}",
                 "--grpc-restricted-protocol", f"inference:infer-key={INFER}",
                 "--http-restricted-api", f"model-repository,statistics,logging:admin-key={ADMIN}",
                 "--http-restricted-api", f"inference:infer-key={INFER}") as proc:  # fmt: skip
        yield proc


GRPC_CALLS: dict[str, Callable[[tc.InferenceServerClient, dict[str, str]], Any]] = {
    "health": lambda c, h: c.is_server_ready(headers=h),
    "metadata": lambda c, h: c.get_model_metadata("lenet5", headers=h),
    "inference": lambda c, h: c.infer("lenet5", [triton_input("input", X)], headers=h),
    "model-repository": lambda c, h: c.get_model_repository_index(headers=h),
    "statistics": lambda c, h: c.get_inference_statistics("lenet5", headers=h),
    "logging": lambda c, h: c.update_log_settings({"log_info": True}, headers=h),
}
HEADERS = {"inference": ("infer-key", INFER), "model-repository": ("admin-key", ADMIN),
           "statistics": ("admin-key", ADMIN), "logging": ("admin-key", ADMIN)}  # fmt: skip


@pytest.mark.parametrize("group", list(GRPC_CALLS))
def test_each_grpc_group_with_and_without_its_header(server: ServerProcess, group: str) -> None:
    call = GRPC_CALLS[group]
    with tc.InferenceServerClient(server.grpc_address) as client:
        if group not in HEADERS:  # not restricted: no header needed
            call(client, {})
            return
        key, value = HEADERS[group]
        expected = f"This protocol is restricted, expecting header 'triton-grpc-protocol-{key}'"
        for headers in ({}, {f"triton-grpc-protocol-{key}": value + "x"}, {key: value}):  # none, wrong, unprefixed
            with pytest.raises(InferenceServerException) as caught:
                call(client, headers)
            assert (caught.value.status(), caught.value.message()) == ("StatusCode.UNAVAILABLE", expected)
        call(client, {f"triton-grpc-protocol-{key}": value})  # answered


def test_cnnserve_v1_belongs_to_inference(server: ServerProcess) -> None:
    board = "\n".join(["." * 19] * 19)
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = v1_pb_grpc.CnnServeStub(channel)
        request = v1_pb.PolicyRequest(model_name="alphago_policy", board=board, to_move=v1_pb.BLACK, top_k=3)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Policy(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        reply = stub.Policy(request, timeout=30, metadata=[("triton-grpc-protocol-infer-key", INFER)])
        assert len(reply.top_moves) == 3


@pytest.mark.parametrize(
    ("method", "path", "group"),
    [("GET", "/v2/health/ready", "health"), ("GET", "/v2/models/lenet5", "metadata"),
     ("POST", "/v2/models/lenet5/infer", "inference"), ("POST", "/v1/models/lenet5/classify", "inference"),
     ("POST", "/v2/repository/index", "model-repository"), ("GET", "/v2/models/lenet5/stats", "statistics"),
     ("GET", "/v2/logging", "logging"), ("POST", "/v2/logging", "logging")],
)  # fmt: skip
def test_each_http_group_with_and_without_its_header(server: ServerProcess, method: str, path: str, group: str) -> None:
    body = None
    if path.endswith("/infer"):
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                       "data": [0.0] * 1024}]}).encode()  # fmt: skip
    elif method == "POST":
        body = b"{}"
    if group not in HEADERS:
        assert http_call(server, method, path, body)[0] == 200
        return
    key, value = HEADERS[group]
    for headers in ({}, {key: value[:-1]}):
        status, reply = http_call(server, method, path, body, headers)
        assert (status, json.loads(reply)) == (403, {"error": f"This API is restricted, expecting header '{key}'"})
    status, _ = http_call(server, method, path, body, {key: value})
    assert status != 403


def test_the_cnnserve_clients_send_headers(server: ServerProcess, tmp_path: Path) -> None:
    board = tmp_path / "empty.txt"
    board.write_text("\n".join(["." * 19] * 19) + "\n")
    common = ["policy", "--board", str(board), "--to-move", "black", "--server", server.grpc_address, "--json"]
    done = cnnserve(*common, "--header", f"triton-grpc-protocol-infer-key={INFER}")
    assert done.returncode == 0 and len(json.loads(done.stdout)["probabilities"]) == 361, done.stderr
    refused = cnnserve(*common)
    assert refused.returncode == 1
    assert "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'" in refused.stderr


def test_the_keys_never_reach_the_output(server: ServerProcess, small_repo: Path) -> None:
    with tc.InferenceServerClient(server.grpc_address) as client, pytest.raises(InferenceServerException):
        client.get_model_repository_index(headers={"triton-grpc-protocol-admin-key": "wrong"})
    assert ADMIN not in server.output and INFER not in server.output
    done = cnnserve("serve", "--repo", str(small_repo), "--grpc-restricted-protocol", f"inference,bogus:k={ADMIN}",
                    timeout=60)  # fmt: skip
    assert done.returncode != 0 and "groups among health,metadata,inference" in done.stderr
    assert ADMIN not in done.stderr
