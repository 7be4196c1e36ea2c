"""OpenTelemetry traces end to end: a real OTLP receiver (opentelemetry-proto's TraceService over
gRPC) gets the spans of the stock clients' calls, with their stages in order, within the time the
call took, and linked to the run they rode in; a client's traceparent continues its trace; the
trace-setting API changes what is traced; a collector that is down costs one log line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
from harness import crowd, http_call, serving, triton_input
from imagefiles import encode, random_rgb
from inprocess import in_process
from otlp import Receiver, Span, free_port, otlp_receiver
from tritonclient.utils import InferenceServerException

from cnnserve.generated.cnnserve.v1 import service_pb2 as v1
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as v1_grpc

BOARD = "\n".join(["." * 19] * 19)
X = np.zeros((1, 1, 32, 32), np.float32)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def otel(receiver_url: str, *more: str) -> tuple[str, ...]:
    return ("level=TIMESTAMPS", "mode=opentelemetry", f"opentelemetry,url={receiver_url}",
            "opentelemetry,bsp_schedule_delay=50", *more)  # fmt: skip


@pytest.fixture()
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    with otlp_receiver() as got:
        yield got


def calls(spans: list[Span], rpc: str) -> list[Span]:
    return [s for s in spans if s.attributes.get("rpc") == rpc]


def family(spans: list[Span], root: Span) -> tuple[Span, list[Span]]:
    """The model span under ``root`` and the compute spans under that."""
    (model,) = [s for s in spans if s.parent_id == root.span_id]
    return model, [s for s in spans if s.parent_id == model.span_id]


def test_each_api_gets_its_spans_with_the_stages_in_order(small_repo: Path, receiver: Receiver) -> None:
    with in_process(small_repo, trace_config=otel(receiver.url, "rate=1")) as server:
        began = time.time_ns()
        with tc.InferenceServerClient(server.grpc_address) as client:
            client.infer("lenet5", [triton_input("input", X)], request_id="by-grpc")
            with pytest.raises(InferenceServerException, match="datatype FP64"):
                client.infer("lenet5", [triton_input("input", X.astype(np.float64), "FP64")], request_id="refused")
        body = json.dumps({"id": "by-http", "inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                                        "data": [0.0] * 1024}]}).encode()  # fmt: skip
        assert http_call(server, "POST", "/v2/models/lenet5/infer", body)[0] == 200
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = v1_grpc.CnnServeStub(channel)
            stub.Classify(v1.ClassifyRequest(model_name="lenet5", images=[encode(random_rgb(40, 30))], top_k=1),
                          timeout=60)  # fmt: skip
            stub.Policy(v1.PolicyRequest(model_name="alphago_policy", board=BOARD, to_move=v1.BLACK), timeout=60)
        ended = time.time_ns()
    spans = list(receiver.spans)  # all of them: a stopping server sends what it has left
    expected = {
        "ModelInfer": ["GRPC_WAITREAD_END", "DECODE_START", "DECODE_END", "ENCODE_START", "GRPC_SEND_START"],
        "/v2/models/{name}/infer": ["HTTP_RECV_START", "HTTP_RECV_END", "DECODE_START", "DECODE_END", "ENCODE_START",
                                    "HTTP_SEND_START", "HTTP_SEND_END"],
        "Classify": ["GRPC_WAITREAD_END", "IMAGE_DECODE_START", "IMAGE_DECODE_END", "ENCODE_START", "GRPC_SEND_START"],
        "Policy": ["GRPC_WAITREAD_END", "PLANES_START", "PLANES_END", "ENCODE_START", "GRPC_SEND_START"],
    }  # fmt: skip
    # A refused call is traced too: its span says why, and it never reached the model.
    (refused,) = [s for s in spans if s.attributes.get("request_id") == "refused"]
    assert refused.status[0] == 2 and refused.status[1].startswith("INVALID_ARGUMENT: input 'input': datatype FP64")
    assert [name for name, _ in refused.events] == ["GRPC_WAITREAD_END", "DECODE_START", "GRPC_SEND_START"]
    assert not [s for s in spans if s.parent_id == refused.span_id]
    spans.remove(refused)
    for rpc, stages in expected.items():
        (root,) = calls(spans, rpc)
        assert root.name == rpc and root.kind == 2 and root.parent_id == ""  # SERVER, a trace of its own
        assert [name for name, _ in root.events] == stages
        times = [ns for _, ns in root.events]
        assert began <= root.start_ns == times[0] <= times[-1] == root.end_ns <= ended and times == sorted(times)
        model, computes = family(spans, root)
        assert model.name == root.attributes["model_name"] and model.attributes["model_version"] == "1"
        assert [name for name, _ in model.events] in (["REQUEST_START", "REQUEST_END"],
                                                      ["REQUEST_START", "QUEUE_START", "REQUEST_END"])  # fmt: skip
        assert root.start_ns <= model.start_ns <= model.end_ns <= root.end_ns
        (compute,) = computes
        assert compute.name == "compute" and [n for n, _ in compute.events][:: len(compute.events) - 1] == [
            "COMPUTE_START", "COMPUTE_END"]  # fmt: skip
        assert model.start_ns <= compute.start_ns <= compute.end_ns <= model.end_ns
        assert root.attributes["protocol"] == ("http" if rpc.startswith("/") else "grpc")
        assert root.resource["service.name"] == "cnnserve" and root.attributes["process.pid"] > 0
    assert calls(spans, "ModelInfer")[0].attributes["request_id"] == "by-grpc"
    assert calls(spans, "/v2/models/{name}/infer")[0].attributes["request_id"] == "by-http"
    assert calls(spans, "Policy")[0].attributes["model_name"] == "alphago_policy"


def test_requests_that_share_a_run_link_its_one_span(small_repo: Path, receiver: Receiver) -> None:
    # A model too slow to run inline on the event loop, and a long queue delay: callers at once wait
    # for each other.
    with in_process(small_repo, models=("cifar_resnet20",), max_queue_delay_us=2_000_000, max_batch_size=4,
                    preferred_batch_sizes=(), trace_config=otel(receiver.url, "rate=1")) as server:  # fmt: skip
        clients = [tc.InferenceServerClient(server.grpc_address) for _ in range(4)]
        image = np.zeros((1, 3, 32, 32), np.float32)

        def call(attempt: int, n: int) -> None:
            clients[n].infer("cifar_resnet20", [triton_input("input", image)])

        try:
            crowd(server, "cifar_resnet20", call, 4)  # four at once: some ride in one run
        finally:
            for client in clients:
                client.close()
    spans = list(receiver.spans)  # all of them: a stopping server sends what it has left
    batches = {s.span_id: s for s in spans if s.name == "batch"}
    linked: dict[str, list[Span]] = {}
    for compute in (s for s in spans if s.name == "compute" and s.links):
        ((trace_id, span_id),) = compute.links
        batch = batches[span_id]
        assert trace_id == batch.trace_id != compute.trace_id  # the run's span is a trace of its own
        assert batch.start_ns == compute.start_ns and batch.end_ns == compute.end_ns
        assert compute.attributes["batch_size"] == batch.attributes["batch_size"]
        assert compute.attributes["instance"] == batch.attributes["instance"] == 0
        linked.setdefault(span_id, []).append(compute)
    shared = [group for group in linked.values() if len(group) > 1]
    assert shared, "no run's span is linked from two requests"
    for group in shared:
        positions = sorted(c.attributes["batch_position"] for c in group)
        assert positions == list(range(len(group))) == list(range(batches[group[0].links[0][1]].attributes[
            "batch_requests"]))  # fmt: skip
        assert len({c.trace_id for c in group}) == len(group)  # each request its own trace
    queued = [s for s in spans if s.name == "cifar_resnet20" and "QUEUE_START" in [n for n, _ in s.events]]
    assert queued  # a request that waited for batch-mates says when it was queued


def test_a_clients_traceparent_continues_its_trace(small_repo: Path, receiver: Receiver) -> None:
    # rate=0: only requests that bring a sampled traceparent are traced (Triton's rule).
    with in_process(small_repo, models=("lenet5",), trace_config=otel(receiver.url, "rate=0")) as server:
        with tc.InferenceServerClient(server.grpc_address) as client:
            client.infer("lenet5", [triton_input("input", X)], request_id="untraced")
            client.infer("lenet5", [triton_input("input", X)], request_id="not-sampled",
                         headers={"traceparent": TRACEPARENT[:-2] + "00"})  # fmt: skip
            client.infer("lenet5", [triton_input("input", X)], request_id="grpc", headers={"traceparent": TRACEPARENT})
        http = th.InferenceServerClient(server.http_address)
        try:
            x = th.InferInput("input", [1, 1, 32, 32], "FP32")
            x.set_data_from_numpy(X)
            http.infer("lenet5", [x], request_id="http", headers={"traceparent": TRACEPARENT})
        finally:
            http.close()
    spans = list(receiver.spans)  # all of them: a stopping server sends what it has left
    roots = [s for s in spans if s.kind == 2]
    assert sorted(s.attributes["request_id"] for s in roots) == ["grpc", "http"]
    for root in roots:
        assert (root.trace_id, root.parent_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        model, _ = family(spans, root)
        assert model.trace_id == root.trace_id


def test_settings_change_what_is_traced_over_both_protocols(small_repo: Path, receiver: Receiver) -> None:
    key = ("trace:admin-key=let-me-in",)
    with in_process(small_repo, models=("lenet5",), trace_config=otel(receiver.url, "rate=1000"),
                    grpc_restricted_protocol=key, http_restricted_api=key) as server:  # fmt: skip
        grpc_client = tc.InferenceServerClient(server.grpc_address)
        http_client = th.InferenceServerClient(server.http_address)
        grpc_key, http_key = {"triton-grpc-protocol-admin-key": "let-me-in"}, {"admin-key": "let-me-in"}
        try:
            # Refused without the group's key, over each protocol.
            with pytest.raises(InferenceServerException, match="This protocol is restricted"):
                grpc_client.get_trace_settings()
            assert http_call(server, "GET", "/v2/trace/setting")[0] == 403
            assert http_client.get_trace_settings(headers=http_key) == {
                "trace_level": ["TIMESTAMPS"], "trace_rate": "1000", "trace_count": "-1", "trace_file": "",
                "log_frequency": "0", "trace_mode": "opentelemetry"}  # fmt: skip

            # Each request is named; which were traced is read from the spans once the server has
            # stopped and sent them all, so a slow export on a busy machine cannot be taken for
            # an untraced request.
            expected: dict[str, bool] = {}

            def send(traced: bool) -> None:
                request_id = f"r{len(expected)}"
                expected[request_id] = traced
                grpc_client.infer("lenet5", [triton_input("input", X)], request_id=request_id)

            send(False)  # one in 1000, and this is the first
            # Over HTTP, for the model: every request, from the next one on.
            got = http_client.update_trace_settings("lenet5", {"trace_rate": "1"}, headers=http_key)
            assert got["trace_rate"] == "1" and got["trace_level"] == ["TIMESTAMPS"]
            send(True)
            send(True)
            assert grpc_client.get_trace_settings(headers=grpc_key).settings["trace_rate"].value == ["1000"]
            # Over gRPC: a count of two, then none.
            got = grpc_client.update_trace_settings("lenet5", {"trace_count": "2"}, headers=grpc_key)
            assert got.settings["trace_count"].value == ["2"] and got.settings["trace_rate"].value == ["1"]
            for traced in (True, True, False):
                send(traced)
            # Off for the server, and the model's own cleared: nothing is traced.
            grpc_client.update_trace_settings(settings={"trace_level": ["OFF"]}, headers=grpc_key)
            http_client.update_trace_settings("lenet5", {"trace_rate": None, "trace_count": None,
                                                         "trace_level": None}, headers=http_key)  # fmt: skip
            assert http_client.get_trace_settings("lenet5", headers=http_key)["trace_level"] == ["OFF"]
            send(False)
            # What is not a client's to change is refused by name, and changes nothing.
            status, body = http_call(server, "POST", "/v2/trace/setting", b'{"trace_file": "/etc/cron.d/x"}',
                                     headers=http_key)  # fmt: skip
            assert status == 400 and "trace setting 'trace_file' is the server's" in json.loads(body)["error"]
            with pytest.raises(InferenceServerException, match="trace setting 'trace_rate': expected an integer"):
                grpc_client.update_trace_settings(settings={"trace_rate": "often"}, headers=grpc_key)
            status, body = http_call(server, "GET", "/v2/models/resnet9000/trace/setting", headers=http_key)
            assert status == 404 and "unknown model 'resnet9000'" in json.loads(body)["error"]
        finally:
            grpc_client.close()
            http_client.close()
    traced = {s.attributes["request_id"] for s in receiver.spans if s.kind == 2}
    assert traced == {request_id for request_id, wanted in expected.items() if wanted}, expected


def test_a_collector_that_is_down_costs_a_log_line(
    small_repo: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    caplog.set_level(logging.INFO, logger="cnnserve.tracing")
    down = f"http://127.0.0.1:{free_port()}"
    with (
        in_process(small_repo, models=("lenet5",), trace_config=otel(down, "rate=1")) as server,
        tc.InferenceServerClient(server.grpc_address) as client,
    ):
        for _ in range(3):  # across several exports: each fails
            for _ in range(10):
                assert client.infer("lenet5", [triton_input("input", X)]).as_numpy("logits").shape == (1, 10)
            stop = time.monotonic() + 20
            while "cannot export" not in caplog.text and time.monotonic() < stop:
                time.sleep(0.1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot export traces to" in errors[0].getMessage(), caplog.text


def test_each_worker_exports_its_own_and_a_change_reaches_all(small_repo: Path, receiver: Receiver) -> None:
    env_free = [f"--trace-config={entry}" for entry in otel(receiver.url, "rate=1000")]
    with serving(small_repo, "--model", "lenet5", "--workers", "2", *env_free) as server:
        status, body = http_call(server, "POST", "/v2/trace/setting", b'{"trace_rate": "1"}')
        assert status == 200 and json.loads(body)["trace_rate"] == "1"
        # The other worker hears of it through the supervisor, a moment later: fresh connections
        # (each lands on either worker) ask until twenty in a row have the new rate.
        agreed, stop = 0, time.monotonic() + 30
        while agreed < 20:
            assert time.monotonic() < stop, "a worker kept the old rate"
            rate = json.loads(http_call(server, "GET", "/v2/trace/setting")[1])["trace_rate"]
            agreed = agreed + 1 if rate == "1" else 0
        # Every request is traced wherever it lands.
        sent = 0
        for _ in range(5):
            for _ in range(10):
                with tc.InferenceServerClient(server.grpc_address) as client:
                    client.infer("lenet5", [triton_input("input", X)])
                sent += 1
            spans = receiver.wait(lambda got, sent=sent: sum(s.kind == 2 for s in got) >= sent)
            if len({s.resource.get("cnnserve.worker") for s in spans if s.kind == 2}) == 2:
                break
    roots = [s for s in receiver.spans if s.kind == 2]
    assert len(roots) == sent  # the change reached both workers: none untraced
    assert {s.resource["cnnserve.worker"] for s in roots} == {0, 1}
    assert len({s.attributes["process.pid"] for s in roots}) == 2
