"""KServe V2 over HTTP against a real server: the stock ``tritonclient.http`` and raw, curl-style
requests, answered the same as over gRPC."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
import tritonclient.http.aio as th_aio
from harness import (
    Served,
    accepted,
    copy_repository,
    http_call,
    http_input,
    ort_run,
    start_server,
    triton_input,
)
from inprocess import InProcessServer, in_process


@pytest.fixture(scope="module")
def server(small_repo: Path) -> Iterator[InProcessServer]:
    with in_process(small_repo, models=("lenet5", "cifar_resnet20")) as served:
        yield served


@pytest.fixture()
def client(server: Served) -> Iterator[th.InferenceServerClient]:
    c = th.InferenceServerClient(server.http_address)
    yield c
    c.close()


def lenet5_input(seed: int, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 1, 32, 32), dtype=np.float32)


# -- health, metadata, index --------------------------------------------------------------------


def test_health_and_metadata_as_triton_serves_them(server: Served, client: th.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("lenet5")
    assert client.is_model_ready("lenet5", "1") and not client.is_model_ready("lenet5", "7")
    assert http_call(server, "GET", "/v2/health/ready") == (200, b"")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "cnnserve" and "classification" in metadata["extensions"]
    model = client.get_model_metadata("lenet5")
    assert model == {"name": "lenet5", "versions": ["1"], "platform": "onnxruntime_onnx",
                     "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
                     "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}  # fmt: skip
    assert client.get_model_metadata("lenet5", "1") == model
    index = client.get_model_repository_index()
    assert {(m["name"], m["state"]) for m in index} == {("lenet5", "READY"), ("cifar_resnet20", "READY")}


def test_statistics_and_config(server: Served, client: th.InferenceServerClient) -> None:
    client.infer("lenet5", [http_input(lenet5_input(5))])
    over_http = client.get_inference_statistics("lenet5")["model_stats"][0]
    with tc.InferenceServerClient(server.grpc_address) as grpc_client:
        over_grpc = grpc_client.get_inference_statistics("lenet5", as_json=True)["model_stats"][0]
    assert over_http["name"] == "lenet5" and over_http["version"] == "1" and over_http["inference_count"] >= 1
    assert int(over_grpc["inference_count"]) == over_http["inference_count"]  # one set of counts, two protocols
    success = over_http["inference_stats"]["success"]
    assert success["count"] >= 1 and success["ns"] > 0 and over_http["batch_stats"][0]["batch_size"] >= 1
    everything = client.get_inference_statistics()  # GET /v2/models/stats
    assert {m["name"] for m in everything["model_stats"]} == {"lenet5", "cifar_resnet20"}
    config = client.get_model_config("lenet5")
    assert (config["name"], config["platform"], config["max_batch_size"]) == ("lenet5", "onnxruntime_onnx", 256)
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [1, 32, 32]}]
    assert config["output"][0]["dims"] == [10] and config["output"][0]["label_filename"] == "labels.txt"
    assert config["dynamic_batching"]["preferred_batch_size"] == [1, 16, 64]


# -- inference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_results_equal_onnx_runtime(
    server: Served, client: th.InferenceServerClient, small_repo: Path, binary: bool
) -> None:
    x = lenet5_input(1, batch=3)
    outputs = [th.InferRequestedOutput("logits", binary_data=binary)]
    result = client.infer("lenet5", [http_input(x, binary)], outputs=outputs, request_id="r-7")
    np.testing.assert_allclose(result.as_numpy("logits"), ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)
    assert result.get_response()["id"] == "r-7" and result.get_response()["model_version"] == "1"
    # The client's defaults: binary inputs, every output in binary.
    default = client.infer("cifar_resnet20", [http_input(np.zeros((2, 3, 32, 32), np.float32))])
    np.testing.assert_allclose(default.as_numpy("logits"), ort_run(small_repo, "cifar_resnet20",
                                                                    np.zeros((2, 3, 32, 32), np.float32)),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_classification_strings_equal_grpc(server: Served, client: th.InferenceServerClient) -> None:
    x = lenet5_input(2, batch=2)
    over_http = client.infer("lenet5", [http_input(x, True)],
                             outputs=[th.InferRequestedOutput("logits", class_count=3)]).as_numpy("logits")  # fmt: skip
    with tc.InferenceServerClient(server.grpc_address) as grpc_client:
        asked = [tc.InferRequestedOutput("logits", class_count=3)]
        over_grpc = grpc_client.infer("lenet5", [triton_input("input", x)], outputs=asked).as_numpy("logits")
    assert over_http.shape == (2, 3) and over_http.tolist() == over_grpc.tolist()


def test_a_curl_style_json_request_with_a_flat_data_list(server: Served, small_repo: Path) -> None:
    x = lenet5_input(3)
    body = json.dumps({"id": "curl", "inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                                 "data": x.reshape(-1).tolist()}]}).encode()  # fmt: skip
    status, reply = http_call(server, "POST", "/v2/models/lenet5/infer", body, {"Content-Type": "application/json"})
    assert status == 200, reply
    document = json.loads(reply)
    (logits,) = document["outputs"]
    assert (document["model_name"], document["id"], logits["name"], logits["datatype"], logits["shape"]) == (
        "lenet5",
        "curl",
        "logits",
        "FP32",
        [1, 10],
    )
    np.testing.assert_allclose(np.array(logits["data"], np.float32).reshape(1, 10),
                               ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)  # fmt: skip


def test_the_aio_client_binary_and_json_concurrently(server: Served, small_repo: Path) -> None:
    """``tritonclient.http.aio``: eight requests at once, half binary and half JSON, each answered
    with its own result; health and metadata on the same client."""
    xs = [lenet5_input(10 + i) for i in range(8)]

    async def main() -> list[np.ndarray]:
        async with th_aio.InferenceServerClient(server.http_address) as c:
            assert await c.is_server_ready() and await c.is_model_ready("lenet5")
            assert (await c.get_model_metadata("lenet5"))["inputs"][0]["shape"] == [-1, 1, 32, 32]
            replies = await asyncio.gather(*(
                c.infer("lenet5", [http_input(x, binary=i % 2 == 0)],
                        outputs=[th_aio.InferRequestedOutput("logits", binary_data=i % 2 == 0)])
                for i, x in enumerate(xs)
            ))  # fmt: skip
            return [r.as_numpy("logits") for r in replies]

    for x, logits in zip(xs, asyncio.run(main()), strict=True):
        np.testing.assert_allclose(logits, ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)


def test_classification_as_json_strings_for_curl(server: Served, small_repo: Path) -> None:
    """A BYTES output in JSON: Triton's classification strings, "score:index:label", as data."""
    x = lenet5_input(4)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}],
                       "outputs": [{"name": "logits", "parameters": {"classification": 2}}]}).encode()  # fmt: skip
    status, reply = http_call(server, "POST", "/v2/models/lenet5/infer", body)
    assert status == 200, reply
    (logits,) = json.loads(reply)["outputs"]
    assert (logits["datatype"], logits["shape"]) == ("BYTES", [1, 2])
    expected = ort_run(small_repo, "lenet5", x)[0]
    best = np.argsort(-expected)[:2]
    labels = (small_repo / "lenet5" / "labels.txt").read_text().splitlines()
    got = [entry.split(":") for entry in logits["data"]]
    assert [(int(i), label) for _, i, label in got] == [(int(b), labels[b]) for b in best]
    np.testing.assert_allclose([float(score) for score, _, _ in got], expected[best], rtol=1e-4, atol=1e-5)


# -- together with gRPC, and shutdown -----------------------------------------------------------


def test_http_and_grpc_callers_share_batches(small_repo: Path, tmp_path: Path) -> None:
    """9 gRPC and 8 HTTP requests at once: a batch larger than either protocol sent must mix them.
    The entry's batches are 16 at most and 16 preferred, so the batch usually leaves on size, not on
    a timer: the first request finds the model idle and goes alone, the other 16 queue. (When two
    start together, 15 are left: they leave after the 5 s queue delay.)"""
    repo = copy_repository(small_repo, tmp_path / "repo")
    config_path = repo / "cifar_resnet20" / "config.json"
    config = json.loads(config_path.read_text())
    config["max_batch_size"] = 16
    config["dynamic_batching"]["preferred_batch_sizes"] = [16]
    config_path.write_text(json.dumps(config))
    with in_process(repo, max_queue_delay_us=5_000_000, models=("cifar_resnet20",)) as served:
        x = np.zeros((1, 3, 32, 32), np.float32)

        def over_http() -> None:
            c = th.InferenceServerClient(served.http_address, network_timeout=60)
            c.infer("cifar_resnet20", [http_input(x)])
            c.close()

        def over_grpc() -> None:
            with tc.InferenceServerClient(served.grpc_address) as c:
                c.infer("cifar_resnet20", [triton_input("input", x)])

        threads = [threading.Thread(target=f) for f in [over_grpc] * 9 + [over_http] * 8]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        with tc.InferenceServerClient(served.grpc_address) as c:
            stats = c.get_inference_statistics("cifar_resnet20").model_stats[0]
    sizes = [b.batch_size for b in stats.batch_stats]
    assert stats.inference_count == 17 and max(sizes) > 9, sizes


def full_batch(address: str) -> None:
    """A full batch of cifar_resnet20 (256 items): tens of milliseconds of compute."""
    c = th.InferenceServerClient(address, network_timeout=120)
    try:
        c.infer("cifar_resnet20", [http_input(np.zeros((256, 3, 32, 32), np.float32))])
    finally:
        c.close()


def test_sigterm_during_http_requests_answers_them(small_repo: Path) -> None:
    """Six requests held in the batcher when SIGTERM comes: each answered in full, with
    ``Connection: close`` (the client should reconnect elsewhere), and the server exits 0."""
    proc = start_server(small_repo, "--max-queue-delay-us", "30000000", "--model", "cifar_resnet20")
    proc.wait_ready()
    xs = [np.random.default_rng(i).standard_normal((1, 3, 32, 32), dtype=np.float32) for i in range(6)]
    results: dict[int, np.ndarray | Exception] = {}
    connection_headers: list[tuple[float, str | None]] = []  # (when answered, the Connection header)

    def call(i: int) -> None:
        c = th.InferenceServerClient(proc.http_address, network_timeout=120)
        try:
            results[i] = c.infer("cifar_resnet20", [http_input(xs[i])]).as_numpy("logits")
        except Exception as exc:
            results[i] = exc
        finally:
            c.close()

    def call_raw(i: int) -> None:  # a JSON request over http.client, to see the reply's headers
        host, port = proc.http_address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                "data": xs[i].reshape(-1).tolist()}]}  # fmt: skip
            connection.request("POST", "/v2/models/cifar_resnet20/infer", json.dumps(body))
            reply = connection.getresponse()
            connection_headers.append((time.monotonic(), reply.getheader("Connection")))
            (logits,) = json.loads(reply.read())["outputs"]
            results[i] = np.array(logits["data"], np.float32).reshape(logits["shape"])
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    def attempt() -> tuple[list[threading.Thread], float, float]:
        """A full batch, then the six; (their threads, requests held, others answered meanwhile).

        A request that finds the model idle runs at once; one that arrives while another runs is
        held by the queue delay. So a full batch goes first: the six arrive while it computes (and
        each one queued keeps the model busy for those behind it), rather than each finding the
        model idle after the one before it was answered."""
        answered_at_start = accepted(proc, "cifar_resnet20")[1]
        primer = threading.Thread(target=lambda: full_batch(proc.http_address))
        primer.start()
        time.sleep(0.02)
        threads = [threading.Thread(target=call_raw if i % 2 else call, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        primer.join(timeout=120)
        deadline = time.monotonic() + 60
        while True:  # held in the batcher, or answered (the primer among them)
            held, answered = accepted(proc, "cifar_resnet20")
            answered -= answered_at_start
            if held + answered >= len(xs) + 1:
                return threads, held, answered - 1
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.05)

    # Threads started on a loaded machine may still reach the server only after the full batch
    # was answered, each finding the model idle: then none is held, and the scene is set again.
    for _ in range(5):
        results.clear()
        connection_headers.clear()
        threads, held, answered_before = attempt()
        if held >= 1:
            break
        for t in threads:
            t.join(timeout=120)
    assert held >= 1, "five tries, and the six requests were never held in the batcher"
    signalled = time.monotonic()
    proc.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=120)
    assert proc.terminate() == 0, proc.output
    for i, x in enumerate(xs):
        got = results[i]
        assert isinstance(got, np.ndarray), got
        np.testing.assert_allclose(got, ort_run(small_repo, "cifar_resnet20", x), rtol=1e-4, atol=1e-5)
    # Requests that found the model idle were answered before the signal (whenever their threads
    # got to read the replies); the rest were held by the 30 s queue delay and answered while
    # draining, each telling its client to close the connection.
    headers = [header for _, header in connection_headers]
    assert len(headers) == len(xs) // 2 and set(headers) <= {"close", None}, connection_headers
    assert headers.count(None) <= answered_before, (connection_headers, answered_before)
    assert any(answered > signalled for answered, _ in connection_headers)
