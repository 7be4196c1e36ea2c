"""A shortened overload (bench/overload.py is the long one, with timings): far more callers than a
tiny queue holds. Asserted is behaviour only, never time: each request ends OK or refused with
RESOURCE_EXHAUSTED for the full queue, both happen, memory stays within a generous bound, and the
server answers correctly afterwards and stops cleanly."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as tc
from harness import ort_run, serving, triton_input

from cnnserve.client.loadgen import Call, run_load
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc

MIB = 1024 * 1024


def resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_an_overload_is_refused_with_resource_exhausted_and_leaves_the_server_well(small_repo: Path) -> None:
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    request = pb.ModelInferRequest(model_name="cifar_resnet20")
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    # --inline-compute-us 0: every request goes through the queue, whose bound is what is tested.
    with serving(small_repo, "--model", "cifar_resnet20", "--max-queue-size", "4", "--inline-compute-us", "0") as proc:
        pid = proc.process.pid
        before = resident(pid)
        codes: collections.Counter[str] = collections.Counter()
        messages: set[str] = set()

        def make_call(channel: grpc.aio.Channel) -> Call:
            infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer

            async def call() -> None:
                try:
                    await infer(request)
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                    messages.add(exc.details() or "")
                    raise
                codes["OK"] += 1

            return call

        # 64 callers against a queue of 4: every batch that runs leaves more waiting than fit.
        started = time.monotonic()
        report = run_load(proc.grpc_address, make_call, concurrency=64, duration=4.0, connections=4)
        assert time.monotonic() - started < 60  # a safety net, not a timing claim
        after = resident(pid)

        assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, (codes, messages)
        assert codes["OK"] > 0 and codes["RESOURCE_EXHAUSTED"] > 0, codes
        assert set(report.errors) == {"RESOURCE_EXHAUSTED"}, report.errors
        assert all("queue full" in m and "max_queue_size 4" in m for m in messages), messages
        assert after < max(2 * before, before + 200 * MIB), (before / MIB, after / MIB)

        with tc.InferenceServerClient(proc.grpc_address) as client:
            reply = client.infer("cifar_resnet20", [triton_input("input", x)])
        np.testing.assert_allclose(reply.as_numpy("logits"), ort_run(small_repo, "cifar_resnet20", x),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
    # leaving serving() asserts exit status 0 on SIGTERM
