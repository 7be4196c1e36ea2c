"""``cnnserve.v1`` over HTTP (curl-style requests) against a real server: the same answers, limits
and messages as the gRPC ``CnnServe`` service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from harness import Served, http_call
from imagefiles import encode, multipart, random_rgb
from inprocess import InProcessServer, in_process

from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc

RECORD = "(;GM[1]SZ[19];B[pd];W[dp];B[pp];W[dd];B[fq];W[cn])"


@pytest.fixture(scope="module")
def server(small_repo: Path) -> Iterator[InProcessServer]:
    with in_process(small_repo, models=("lenet5", "alphago_policy")) as served:
        yield served


@pytest.fixture(scope="module")
def stub(server: Served) -> Iterator[pb_grpc.CnnServeStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield pb_grpc.CnnServeStub(channel)


def post(server: Served, path: str, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, dict]:
    status, reply = http_call(server, "POST", path, body, {"Content-Type": content_type})
    return status, json.loads(reply)


def classes(result: pb.Classification) -> list[tuple[int, str, float]]:
    return [(c.index, c.label, round(c.probability, 6)) for c in result.classes]


def test_classify_one_image_or_several_equals_grpc(server: Served, stub: pb_grpc.CnnServeStub) -> None:
    images = [encode(random_rgb(40, 30, seed=s)) for s in (1, 2)]
    grpc_reply = stub.Classify(pb.ClassifyRequest(model_name="lenet5", images=images, top_k=3), timeout=60)
    status, one = post(server, "/v1/models/lenet5/classify?top_k=3", images[0])
    assert status == 200 and (one["model_name"], one["model_version"], one["trained"]) == ("lenet5", "1", True)
    got = [(c["index"], c["label"], round(c["probability"], 6)) for c in one["results"][0]["classes"]]
    assert got == classes(grpc_reply.results[0])
    status, both = post(server, "/v1/models/lenet5/classify?top_k=3", *multipart(images))
    assert status == 200 and len(both["results"]) == 2
    for result, expected in zip(both["results"], grpc_reply.results, strict=True):
        assert [(c["index"], c["label"], round(c["probability"], 6)) for c in result["classes"]] == classes(expected)


def test_policy_from_an_sgf_record_equals_grpc(server: Served, stub: pb_grpc.CnnServeStub) -> None:
    grpc_reply = stub.Policy(pb.PolicyRequest(model_name="alphago_policy", sgf=RECORD, move_number=4, top_k=5),
                             timeout=60)  # fmt: skip
    status, reply = post(server, "/v1/models/alphago_policy/policy?move_number=4&top_k=5", RECORD.encode())
    assert status == 200
    assert [m["vertex"] for m in reply["top_moves"]] == [m.vertex for m in grpc_reply.top_moves]
    assert reply["probabilities"] == pytest.approx(list(grpc_reply.probabilities), abs=1e-6)
    assert (reply["to_move"], reply["move_number"], reply["board"]) == ("black", 4, grpc_reply.board)
    status, told = post(server, "/v1/models/alphago_policy/policy?move_number=4&to_move=white", RECORD.encode())
    assert status == 200 and told["to_move"] == "white"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [("/v1/models/lenet5/classify?top_k=x", b"", 400, "top_k: 'x' is not an integer"),
     ("/v1/models/alphago_policy/policy?to_move=red", RECORD.encode(), 400, "to_move: 'red'; expected black or white"),
     ("/v1/models/alphago_policy/policy?top_k=999", RECORD.encode(), 400, "top_k: 999; expected 0 to 361")],
)  # fmt: skip
def test_bad_queries_are_400_naming_the_parameter(
    server: Served, path: str, body: bytes, status: int, message: str
) -> None:
    got, reply = post(server, path, body)
    assert got == status and message in reply["error"]


def test_errors_carry_grpcs_message(server: Served, stub: pb_grpc.CnnServeStub) -> None:
    for model, data, status in (("nope", encode(random_rgb(8, 8)), 404), ("lenet5", b"not an image", 400)):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Classify(pb.ClassifyRequest(model_name=model, images=[data], top_k=1), timeout=60)
        got, reply = post(server, f"/v1/models/{model}/classify", data)
        assert got == status and reply["error"] == caught.value.details()
