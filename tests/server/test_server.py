"""The real server in a subprocess on free ports, called over gRPC with the stock tritonclient
and with our own stubs. Results are compared with ONNX Runtime run in this process on the same
files; nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tc_aio
from badrequests import bad_requests, zeros
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from harness import (
    ServerProcess,
    accepted,
    model_total,
    ort_run,
    scrape,
    serving,
    start_server,
    triton_input,
    wait_ready,
)
from tritonclient.utils import InferenceServerException

from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc
from cnnserve.server.metrics import INFO_LABELS
from cnnserve.server.runtime import devices

LIMIT = 4 * 1024 * 1024  # this module's servers take messages up to 4 MiB


@pytest.fixture(scope="module")
def repo(repo_with_broken: Path) -> Path:
    return repo_with_broken


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with serving(repo, "--max-queue-delay-us", "20000", "--max-message-bytes", str(LIMIT)) as proc:
        yield proc


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[tc.InferenceServerClient]:
    with tc.InferenceServerClient(server.grpc_address) as c:
        yield c


# -- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape"), [("lenet5", (3, 1, 32, 32)), ("cifar_resnet20", (2, 3, 32, 32)),
                                             ("alphago_policy", (2, 48, 19, 19))])  # fmt: skip
def test_results_equal_onnxruntime_in_process(
    name: str, shape: tuple[int, ...], client: tc.InferenceServerClient, repo: Path
) -> None:
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    input_name = "planes" if name == "alphago_policy" else "input"
    result = client.infer(name, [triton_input(input_name, x)])
    output = "probabilities" if name == "alphago_policy" else "logits"
    np.testing.assert_allclose(result.as_numpy(output), ort_run(repo, name, x), rtol=1e-5, atol=1e-6)
    assert result.get_response().model_version == "1"


# 2 items decode on the event loop; 80 items (81,920 values) in a worker thread.
@pytest.mark.parametrize("items", [2, 80])
def test_own_stubs_with_typed_contents(server: ServerProcess, repo: Path, items: int) -> None:
    x = np.random.default_rng(1).standard_normal((items, 1, 32, 32), dtype=np.float32)
    request = pb.ModelInferRequest(model_name="lenet5", id="req-7")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    with grpc.insecure_channel(server.grpc_address) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert response.id == "req-7" and response.outputs[0].name == "logits"
    assert list(response.outputs[0].shape) == [items, 10] and response.outputs[0].datatype == "FP32"
    logits = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(items, 10)
    np.testing.assert_allclose(logits, ort_run(repo, "lenet5", x), rtol=1e-5, atol=1e-6)


def test_classification_extension(client: tc.InferenceServerClient, repo: Path) -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32), dtype=np.float32)
    result = client.infer(
        "cifar_resnet20", [triton_input("input", x)], outputs=[tc.InferRequestedOutput("logits", class_count=3)]
    )
    top = result.as_numpy("logits")
    assert top.shape == (2, 3)
    labels = (repo / "cifar_resnet20" / "labels.txt").read_text().splitlines()
    expected = ort_run(repo, "cifar_resnet20", x)
    for row in range(2):
        parts = [item.decode().split(":") for item in top[row]]
        indices = [int(index) for _, index, _ in parts]
        assert indices == list(np.argsort(-expected[row])[:3])
        assert [label for _, _, label in parts] == [labels[i] for i in indices]
        assert [float(score) for score, _, _ in parts] == pytest.approx(expected[row][indices], rel=1e-4)


def test_metadata_index_and_statistics(client: tc.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "cnnserve" and "classification" in meta.extensions
    model = client.get_model_metadata("alphago_policy")
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("planes", "FP32", [-1, 48, 19, 19])]
    assert [(t.name, list(t.shape)) for t in model.outputs] == [("probabilities", [-1, 361])]
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert {n: m.state for n, m in index.items()} == {
        "alphago_policy": "READY", "broken": "UNAVAILABLE", "cifar_resnet20": "READY", "lenet5": "READY",
    }  # fmt: skip
    assert "model.onnx" in index["broken"].reason
    client.infer("lenet5", [triton_input("input", np.zeros((2, 1, 32, 32), np.float32))])
    stats = client.get_inference_statistics("lenet5").model_stats[0]
    assert stats.name == "lenet5" and stats.inference_count >= 2 and stats.execution_count >= 1
    assert stats.inference_stats.success.count >= 1 and stats.inference_stats.compute_infer.ns > 0
    assert sum(b.compute_infer.count for b in stats.batch_stats) == stats.execution_count


# -- batching ----------------------------------------------------------------------------------


def test_concurrent_requests_are_batched(server: ServerProcess, repo: Path) -> None:
    xs = [np.random.default_rng(i).standard_normal((1, 3, 32, 32), dtype=np.float32) for i in range(48)]

    async def fire() -> list[np.ndarray]:
        async with tc_aio.InferenceServerClient(server.grpc_address) as c:
            results = await asyncio.gather(*(c.infer("cifar_resnet20", [triton_input("input", x)]) for x in xs))
        return [r.as_numpy("logits") for r in results]

    before = scrape(server.metrics_address)
    outputs = asyncio.run(fire())
    # Each caller got its own item back, exactly.
    np.testing.assert_allclose(np.concatenate(outputs), ort_run(repo, "cifar_resnet20", np.concatenate(xs)),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    after = scrape(server.metrics_address)

    def count(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
        return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items()))

    batches = count(after, "cnnserve_batch_size_count", model="cifar_resnet20") - count(
        before, "cnnserve_batch_size_count", model="cifar_resnet20"
    )
    items = count(after, "cnnserve_batch_size_sum", model="cifar_resnet20") - count(
        before, "cnnserve_batch_size_sum", model="cifar_resnet20"
    )
    assert items == 48
    assert batches < 48, "no two concurrent requests shared an ONNX Runtime run"


# -- bad input -----------------------------------------------------------------------------------


def _good(client: tc.InferenceServerClient) -> None:
    x = np.zeros((1, 1, 32, 32), np.float32)
    assert client.infer("lenet5", [triton_input("input", x)]).as_numpy("logits").shape == (1, 10)


@bad_requests
def test_bad_requests_get_a_status_naming_the_field(
    model: str,
    version: str,
    inputs: list[tuple[str, tuple[int, ...], str]],
    code: str,
    message: str,
    client: tc.InferenceServerClient,
) -> None:
    tensors = [triton_input(name, zeros(shape, datatype), datatype) for name, shape, datatype in inputs]
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, tensors, model_version=version)
    assert info.value.status() == f"StatusCode.{code}"
    assert message in info.value.message()
    _good(client)  # and the server answers the next good request


def test_raw_bytes_that_do_not_match_the_shape(server: ServerProcess, client: tc.InferenceServerClient) -> None:
    request = pb.ModelInferRequest(model_name="lenet5")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 32, 32])
    request.raw_input_contents.append(b"\x00" * 4095)
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'input': raw_input_contents has 4095 bytes, expected 4096 for shape [1, 1, 32, 32] FP32" in str(
        info.value.details()
    )
    _good(client)


def test_a_tensor_is_refused_from_its_header_before_it_is_decoded(
    server: ServerProcess, client: tc.InferenceServerClient
) -> None:
    # 2 MiB that are not even valid BYTES elements: the refusal names the datatype, which only the
    # check of the tensor's header can (decoding would fail on the elements first).
    request = pb.ModelInferRequest(model_name="lenet5")
    request.inputs.add(name="input", datatype="BYTES", shape=[1, 1, 32, 32])
    request.raw_input_contents.append(b"\xff" * (2 << 20))
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "input 'input': datatype BYTES, model 'lenet5' expects FP32"
    _good(client)


def test_queued_bytes_and_concurrent_rpcs_are_bounded(small_repo: Path) -> None:
    with (
        serving(small_repo, "--max-queue-bytes", "1KiB", "--max-concurrent-rpcs", "1") as proc,
        grpc.insecure_channel(proc.grpc_address) as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="lenet5")
        request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 32, 32])
        request.raw_input_contents.append(b"\x00" * 4096)
        for _ in range(100):
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, timeout=30)
            # The readiness probe's call may hold the one RPC slot a moment after its answer left.
            if info.value.details() != "Concurrent RPC limit exceeded!":
                break
            time.sleep(0.1)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details() == (
            "model 'lenet5': queue full (0 bytes waiting, this request 4,096 bytes, max_queue_bytes 1,024); retry later"
        )
        # An open stream holds the only RPC slot: gRPC refuses the next call itself.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "Concurrent RPC limit exceeded" in (info.value.details() or "")
        watch.cancel()
        # The slot is free once the server has seen the stream end.
        for _ in range(100):
            try:
                assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                time.sleep(0.1)
        else:
            raise AssertionError("the RPC slot was not freed after the stream ended")


def test_padded_batch_shapes_serve_the_same_results(small_repo: Path) -> None:
    """What the CUDA provider gets by default, asked for on the CPU: batches padded to a bucket."""
    x = np.random.default_rng(3).standard_normal((3, 1, 32, 32), dtype=np.float32)
    with (
        serving(small_repo, "--batch-shapes", "padded", "--model", "lenet5") as proc,
        tc.InferenceServerClient(proc.grpc_address) as c,
    ):
        logits = c.infer("lenet5", [triton_input("input", x)]).as_numpy("logits")
    assert "padded to [1, 16, 64, 256], one session per size" in proc.output  # read to the end by now
    np.testing.assert_allclose(logits, ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("threshold", "said"),
    [("1000000", "so it runs inline on the event loop"), ("0", "so it goes to a worker thread")],
)
def test_lone_requests_inline_or_threaded_answer_the_same(small_repo: Path, threshold: str, said: str) -> None:
    x = np.random.default_rng(4).standard_normal((1, 1, 32, 32), dtype=np.float32)  # one item: inline-sized
    with (
        serving(small_repo, "--inline-compute-us", threshold, "--model", "lenet5") as proc,
        tc.InferenceServerClient(proc.grpc_address) as c,
    ):
        results = []
        for _ in range(3):
            # A lone caller that pauses between calls: an arrival within the batcher's lone gap of
            # the last run's end is taken for part of a crowd, however idle the model.
            time.sleep(0.01)
            results.append(c.infer("lenet5", [triton_input("input", x)]).as_numpy("logits"))
        samples = scrape(proc.metrics_address)
    assert "model lenet5: a lone request computes in " in proc.output and said in proc.output
    assert model_total(samples, "lenet5", "cnnserve_queue_duration_seconds_count") == 3
    if threshold != "0":  # run inline: no time in the queue at all, each a batch of its own
        assert model_total(samples, "lenet5", "cnnserve_queue_duration_seconds_sum") == 0
        assert model_total(samples, "lenet5", "cnnserve_batch_size_count") == 3
    for logits in results:
        np.testing.assert_allclose(logits, ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)


def test_a_model_slower_than_the_threshold_is_never_run_inline(small_repo: Path) -> None:
    # No network computes a request in a microsecond.
    with serving(small_repo, "--inline-compute-us", "1", "--model", "cifar_resnet20") as proc:
        pass
    assert "so it goes to a worker thread (inline up to --inline-compute-us 1)" in proc.output


def test_a_message_over_the_limit_is_resource_exhausted(client: tc.InferenceServerClient) -> None:
    x = np.zeros((1100, 1, 32, 32), np.float32)  # 4.5 MB > 4 MiB
    with pytest.raises(InferenceServerException) as info:
        client.infer("lenet5", [triton_input("input", x)])
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert str(LIMIT) in info.value.message()
    _good(client)


def test_model_ready_reports_the_broken_entry(client: tc.InferenceServerClient) -> None:
    assert client.is_model_ready("lenet5")
    assert not client.is_model_ready("broken")
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.is_model_ready("nope")


# -- deadlines and cancellation ------------------------------------------------------------------


def test_a_passed_deadline_is_deadline_exceeded(client: tc.InferenceServerClient) -> None:
    x = np.zeros((64, 48, 19, 19), np.float32)
    with pytest.raises(InferenceServerException) as info:
        client.infer("alphago_policy", [triton_input("planes", x)], client_timeout=0.0005)
    assert info.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    _good(client)


def test_cancelled_calls_are_never_computed_and_the_server_goes_on(small_repo: Path) -> None:
    """Eight calls reach the batcher (a 30 s queue delay; one that finds the model idle may run at
    once), their clients cancel, then a full preferred-size batch runs: each of the eight was
    either computed or dropped, never both, and the server answers correctly. A full batch goes
    first, so the eight arrive while it computes and queue, rather than each finding the model
    idle after the one before it was answered, as calls on a loaded machine may."""
    proc = start_server(small_repo, "--max-queue-delay-us", "30000000", "--model", "cifar_resnet20")
    try:
        wait_ready(proc.grpc_address)
        one = np.zeros((1, 3, 32, 32), np.float32)

        async def cancel_then_serve() -> tuple[int, int, np.ndarray]:
            async with grpc.aio.insecure_channel(proc.grpc_address) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                request = pb.ModelInferRequest(model_name="cifar_resnet20")
                request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
                request.raw_input_contents.append(one.tobytes())
                first = pb.ModelInferRequest(model_name="cifar_resnet20")
                first.inputs.add(name="input", datatype="FP32", shape=[256, 3, 32, 32])
                first.raw_input_contents.append(np.zeros((256, 3, 32, 32), np.float32).tobytes())
                primer = stub.ModelInfer(first)
                await asyncio.sleep(0.02)
                calls = [stub.ModelInfer(request) for _ in range(8)]
                while sum(accepted(proc, "cifar_resnet20")) < 9:  # every call reached the server
                    await asyncio.sleep(0.05)
                for call in calls:
                    call.cancel()
                await primer
                completed = cancelled = 0
                for call in calls:
                    try:
                        await call
                        completed += 1
                    except asyncio.CancelledError:
                        cancelled += 1
                while accepted(proc, "cifar_resnet20")[0] > 0:  # the server saw the cancellations
                    await asyncio.sleep(0.05)
            async with tc_aio.InferenceServerClient(proc.grpc_address) as c:
                full = np.ones((64, 3, 32, 32), np.float32)  # the preferred size leaves at once
                result = await c.infer("cifar_resnet20", [triton_input("input", full)])
            return completed, cancelled, result.as_numpy("logits")

        completed, cancelled, logits = asyncio.run(cancel_then_serve())
        np.testing.assert_allclose(logits, ort_run(small_repo, "cifar_resnet20", np.ones((64, 3, 32, 32), np.float32)),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
        assert cancelled >= 1 and completed + cancelled == 8  # only requests that found the model idle ran
        samples = scrape(proc.metrics_address)
        codes = {lab["code"]: v for lab, v in samples["cnnserve_requests_total"] if lab["model"] == "cifar_resnet20"}
        assert codes == {"CANCELLED": cancelled, "OK": completed + 2}
        dropped = sum(v for lab, v in samples["cnnserve_dropped_requests_total"] if lab["reason"] == "cancelled")
        computed = (
            sum(v for lab, v in samples["cnnserve_batch_size_sum"] if lab["model"] == "cifar_resnet20") - 64 - 256
        )
        assert dropped >= cancelled - 1  # a call cancelled while its batch ran was computed, not dropped
        assert dropped + computed == 8  # each of the eight: computed or dropped, never both
    finally:
        assert proc.terminate() == 0, proc.output


# -- health, reflection, metrics -----------------------------------------------------------------


def test_health_overall_and_per_model(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        status = {
            name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
            for name in ("", "lenet5", "broken")
        }
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert status == {"": serving, "lenet5": serving, "broken": not_serving}


def test_reflection_describes_the_services(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"inference.GRPCInferenceService", "cnnserve.v1.CnnServe", "grpc.health.v1.Health"} <= services
        described = database.FindFileContainingSymbol("inference.ModelInferRequest")
        assert "ModelInferRequest" in [m.name for m in described.message_type]
        described = database.FindFileContainingSymbol("cnnserve.v1.ClassifyRequest")
        assert "ClassifyRequest" in [m.name for m in described.message_type]


def test_metrics_have_the_design_names_and_labels(server: ServerProcess, client: tc.InferenceServerClient) -> None:
    _good(client)
    samples = scrape(server.metrics_address)
    for name in ("cnnserve_request_duration_seconds_bucket", "cnnserve_queue_duration_seconds_bucket",
                 "cnnserve_compute_duration_seconds_bucket", "cnnserve_copy_duration_seconds_bucket",
                 "cnnserve_batch_size_bucket"):  # fmt: skip
        models = {lab.get("model") for lab, _ in samples[name]}
        assert "lenet5" in models, name
    buckets = {lab["le"] for lab, _ in samples["cnnserve_request_duration_seconds_bucket"]}
    assert {"0.0001", "10.0"} <= buckets
    ok = [lab for lab, v in samples["cnnserve_requests_total"] if lab["model"] == "lenet5" and lab["code"] == "OK"]
    assert ok and ok[0]["rpc"] == "ModelInfer"
    assert any(lab["model"] == "lenet5" for lab, _ in samples["cnnserve_inflight_requests"])
    info = {lab["model"]: lab for lab, v in samples["cnnserve_model_info"] if v == 1}
    assert info["lenet5"]["provider"] == "CPUExecutionProvider"
    assert info["lenet5"]["architecture"] == "lenet5" and info["lenet5"]["weight_layers"] == "5"
    assert info["lenet5"]["parameters"] == "61706" and info["lenet5"]["trained"] == "true"
    assert info["broken"]["state"] == "failed" and info["lenet5"]["batch_shapes"] == "exact"
    # Bounded labels: the failure's reason is in the log and the repository index, not a label.
    assert set(info["broken"]) == set(info["lenet5"]) == set(INFO_LABELS)
    assert re.search(r"cnnserve.models: model broken failed to load: \S", server.output)


def test_cpu_machines_get_no_onnxruntime_errors(server: ServerProcess) -> None:
    assert "[E:onnxruntime" not in server.output
    assert "CUDA" not in server.output


# -- lifecycle -----------------------------------------------------------------------------------


def test_sigterm_during_load_loses_no_accepted_request(small_repo: Path) -> None:
    """Requests held in the batcher (a long queue delay) when SIGTERM arrives are all answered."""
    proc = start_server(small_repo, "--max-queue-delay-us", "30000000", "--model", "cifar_resnet20")
    proc.wait_ready()
    xs = [np.random.default_rng(i).standard_normal((1, 3, 32, 32), dtype=np.float32) for i in range(12)]

    async def load_then_terminate() -> list[np.ndarray]:
        async with tc_aio.InferenceServerClient(proc.grpc_address) as c:
            calls = [asyncio.create_task(c.infer("cifar_resnet20", [triton_input("input", x)])) for x in xs]
            # Wait until the server has accepted all of them (held in the batcher, or already
            # answered where one found the model idle).
            while sum(accepted(proc, "cifar_resnet20")) < len(xs):
                await asyncio.sleep(0.05)
            proc.process.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*calls)
        return [r.as_numpy("logits") for r in results]

    outputs = asyncio.run(load_then_terminate())
    assert proc.terminate() == 0, proc.output
    np.testing.assert_allclose(np.concatenate(outputs), ort_run(small_repo, "cifar_resnet20", np.concatenate(xs)),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    assert "shutting down" in proc.output and "stopped" in proc.output


def test_device_cuda_fails_loudly_without_a_gpu(small_repo: Path) -> None:
    proc = start_server(small_repo, "--device", "cuda", wait=False)
    proc.collect()
    code = proc.process.wait(timeout=60)
    proc.close()
    assert code == 1
    assert "--device cuda: no NVIDIA driver found" in proc.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-shapes", "exact"], "--cuda-graphs on: a CUDA graph replays one input shape; use --batch-shapes"),
        (["--device", "cpu"], "--cuda-graphs on needs the CUDA provider, which this server cannot use: --device cpu"),
        ([], "--cuda-graphs on needs the CUDA provider, which this server cannot use: no NVIDIA driver found"),
    ],
)
def test_cuda_graphs_are_refused_before_listening_where_they_cannot_work(
    small_repo: Path, flags: list[str], message: str
) -> None:
    if devices.gpu_present() and not flags:
        pytest.skip("a GPU is present: --cuda-graphs on can work here")
    proc = start_server(small_repo, "--cuda-graphs", "on", *flags, wait=False)
    proc.collect()
    code = proc.process.wait(timeout=60)
    proc.close()
    assert code == 1
    assert message in proc.output and "cnnserve listening" not in proc.output
