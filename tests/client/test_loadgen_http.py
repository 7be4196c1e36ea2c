"""The load generator over HTTP (KServe V2 REST, binary tensors) against a real server, and the
bare aiohttp echo that bench.vs_http measures it against."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as th
from harness import ServerProcess, serving

from cnnserve.client.loadgen import http_connect, http_post, run_load

ROOT = Path(__file__).resolve().parents[2]
HEADER_LENGTH = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def lenet5_server(small_repo: Path) -> Iterator[ServerProcess]:
    with serving(small_repo, "--model", "lenet5") as proc:
        yield proc


def binary_request(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A binary V2 request for lenet5 as tritonclient writes it: the JSON, then the tensor's bytes."""
    tensor = th.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    body, json_size = th.InferenceServerClient.generate_request_body(
        [tensor], outputs=[th.InferRequestedOutput("logits", binary_data=True)]
    )
    assert json_size is not None
    return body, {HEADER_LENGTH: str(json_size)}


def lenet5_input() -> np.ndarray:
    return np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)


@pytest.mark.parametrize("rate", [None, 200.0], ids=["closed", "open"])
def test_http_load_counts_every_request(lenet5_server: ServerProcess, rate: float | None) -> None:
    body, headers = binary_request(lenet5_input())
    report = run_load(lenet5_server.http_address, http_post("/v2/models/lenet5/infer", body, headers),
                      connect=http_connect(limit=4), concurrency=4, rate=rate, requests=40)  # fmt: skip
    assert (report.ok, report.failed) == (40, 0), report.error_messages
    assert not report.interrupted


def test_http_failures_are_counted_by_status(lenet5_server: ServerProcess) -> None:
    body, headers = binary_request(lenet5_input())
    report = run_load(lenet5_server.http_address, http_post("/v2/models/nonesuch/infer", body, headers),
                      connect=http_connect(), concurrency=2, requests=6)  # fmt: skip
    assert (report.ok, report.failed) == (0, 6)
    assert dict(report.errors) == {"HTTP 404": 6}
    assert "nonesuch" in report.error_messages["HTTP 404"]


def test_http_echo_answers_the_reply_cnnserve_sends() -> None:
    command = [sys.executable, "-m", "bench.http_echo", "--port", "0", "--reply-floats", "1000"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    assert process.stdout is not None
    try:
        found = re.fullmatch(r"HttpEcho listening: http=(\S+)\n", process.stdout.readline())
        assert found, "the echo did not say where it listens"
        body, headers = binary_request(lenet5_input())
        request = urllib.request.Request(f"http://{found[1]}/v2/models/resnet50/infer", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200
            length, content = reply.headers[HEADER_LENGTH], reply.read()
        result = th.InferResult.from_response_body(content, header_length=int(length))
        logits = result.as_numpy("logits")
        assert logits is not None
        assert (logits.shape, logits.dtype) == ((1, 1000), np.float32)
        # The loads of bench.vs_http reach it the same way.
        report = run_load(found[1], http_post("/v2/models/resnet50/infer", body, headers), connect=http_connect(4),
                          concurrency=4, requests=20)  # fmt: skip
        assert (report.ok, report.failed) == (20, 0), report.error_messages
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process.stdout.close()
