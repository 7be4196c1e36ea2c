"""Shared pieces of the benchmarks: a server subprocess, a closed-loop gRPC or HTTP load, percentiles."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnserve.client.bench import Request, Target
from cnnserve.client.channel import CHANNEL_OPTIONS
from cnnserve.client.loadgen import LoadReport, http_connect, http_post, run_load
from cnnserve.generated.cnnserve.v1 import service_pb2 as v1_pb
from cnnserve.generated.inference import grpc_service_pb2 as pb

__all__ = ["CHANNEL_OPTIONS", "HEADER_LENGTH", "ROOT", "HttpRequest", "LoadReport", "Served", "closed_loop",
           "cpu_seconds", "ensure_exported", "free_port", "http_closed_loop", "http_infer_request", "infer_request",
           "progress", "resident_bytes", "running_server", "serving_process", "serving_with_http",
           "serving_with_metrics"]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
# Triton's binary tensor extension: the length of the JSON that binary tensor data follows.
HEADER_LENGTH = "Inference-Header-Content-Length"


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_exported(repo: Path, *names: str) -> None:
    missing = [n for n in names if not (repo / n / "config.json").is_file()]
    if missing:
        progress(f"exporting {', '.join(missing)} into {repo}/ ...")
        subprocess.run([sys.executable, "-m", "cnnserve", "export", "--repo", str(repo), *missing], check=True)


@contextmanager
def running_server(repo: Path, *args: str) -> Iterator[str]:
    """``cnnserve serve`` on a free port, metrics and HTTP off; yields its gRPC address once it is ready."""
    with serving_process(repo, *args) as served:
        yield served.grpc


@contextmanager
def serving_with_metrics(repo: Path, *args: str) -> Iterator[tuple[str, str]]:
    """``cnnserve serve`` on free ports; yields its gRPC and metrics addresses once it is ready."""
    with serving_process(repo, *args, metrics_port="0") as served:
        yield served.grpc, served.metrics


@contextmanager
def serving_with_http(repo: Path, *args: str) -> Iterator[tuple[str, str]]:
    """``cnnserve serve`` on free ports, metrics off; yields its gRPC and HTTP addresses once it is ready."""
    with serving_process(repo, *args, http_port="0") as served:
        yield served.grpc, served.http


class Served(NamedTuple):
    """A started ``cnnserve serve``: its addresses ("off" for a front end that is off) and its pid
    (to read its resident memory, :func:`resident_bytes`)."""

    grpc: str
    metrics: str
    http: str
    pid: int


def resident_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (VmRSS of /proc/PID/status, Linux), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # in kB
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def free_port() -> int:
    """A loopback port free now, for a server that takes its port from a flag or a file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and of its descendants alive now (Linux's
    /proc): a server's cost per request, whatever threads or worker processes it runs."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    seconds = (int(fields[11]) + int(fields[12])) / tick
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                seconds += cpu_seconds(int(child))
    return seconds


@contextmanager
def serving_process(repo: Path, *args: str, metrics_port: str = "-1", http_port: str = "-1") -> Iterator[Served]:
    """``cnnserve serve`` on a free gRPC port (metrics and HTTP off unless given "0"); yields its
    addresses and pid once it is ready, and stops it with SIGTERM on leaving."""
    command = [sys.executable, "-m", "cnnserve", "serve", "--repo", str(repo), "--host", "127.0.0.1",
               "--grpc-port", "0", "--metrics-port", metrics_port, "--http-port", http_port, "--log-level", "warning",
               *args]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    address = metrics = http = ""
    for line in process.stdout:
        found = re.search(r"cnnserve listening: grpc=(\S+) metrics=(\S+) http=(\S+)", line)
        address, metrics, http = found.groups() if found else (address, metrics, http)
        if line.startswith("cnnserve ready:"):
            break
    if not address:
        process.kill()
        raise RuntimeError("the server did not start; run `cnnserve serve` by hand to see why")
    try:
        yield Served(address, metrics, http, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        process.stdout.close()


@contextmanager
def running_module(module: str, *flags: str, address: str = "grpc") -> Iterator[str]:
    """``python -m MODULE FLAGS``, a bare server that prints ``ADDRESS=host:port`` on its first
    line (``grpc=`` for bench.echo, ``http=`` for bench.http_echo); yields that address."""
    command = [sys.executable, "-m", module, *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    found = re.search(rf"{address}=(\S+)", process.stdout.readline())
    if not found:
        process.kill()
        raise RuntimeError(f"{module} did not start")
    try:
        yield found.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        process.stdout.close()


def infer_request(model: str, input_name: str, x: np.ndarray) -> pb.ModelInferRequest:
    """A V2 request of ``x`` as raw bytes: FP32, or UINT8 for uint8 pixels."""
    request = pb.ModelInferRequest(model_name=model)
    datatype, wire = ("UINT8", "u1") if x.dtype == np.uint8 else ("FP32", "<f4")
    request.inputs.add(name=input_name, datatype=datatype, shape=list(x.shape))
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype=wire).tobytes())
    return request


def closed_loop(address: str, request: Request, *, concurrency: int, seconds: float, items_per_request: int = 1,
                warmup: float = 1.0, connections: int = 1) -> LoadReport:  # fmt: skip
    """``concurrency`` callers for ``seconds`` after ``warmup``, each sending the next request
    (ModelInfer, Classify or Policy, by the request's type) as soon as its last one returns, over
    ``connections`` TCP connections."""

    rpc = {v1_pb.ClassifyRequest: "classify", v1_pb.PolicyRequest: "policy"}.get(type(request), "v2")
    target = Target(request.model_name, rpc, items_per_request, request)
    report = run_load(address, target.make_call, items_per_request=items_per_request, concurrency=concurrency,
                      duration=seconds, warmup=warmup, connections=connections)  # fmt: skip
    if report.failed:
        raise RuntimeError(f"{report.failed} requests failed: {report.error_messages}")
    return report


class HttpRequest(NamedTuple):
    """A POST of the load generator's HTTP calls: the path, the body and its headers."""

    path: str
    body: bytes
    headers: dict[str, str]


def http_infer_request(model: str, input_name: str, x: np.ndarray, output_name: str) -> HttpRequest:
    """The V2 REST request of :func:`infer_request` in Triton's binary tensor extension: the JSON
    header, then ``x``'s raw bytes; ``output_name`` is asked for in binary too."""
    datatype, wire = ("UINT8", "u1") if x.dtype == np.uint8 else ("FP32", "<f4")
    raw = np.ascontiguousarray(x, dtype=wire).tobytes()
    header = json.dumps({
        "inputs": [{"name": input_name, "shape": list(x.shape), "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    return HttpRequest(f"/v2/models/{model}/infer", header + raw, {HEADER_LENGTH: str(len(header))})


def http_closed_loop(address: str, request: HttpRequest, *, concurrency: int, seconds: float,
                     warmup: float = 1.0) -> LoadReport:  # fmt: skip
    """:func:`closed_loop` over HTTP/1.1: ``concurrency`` callers, each on a keep-alive
    connection of its own, POST ``request`` to the HTTP server at ``address``."""
    report = run_load(address, http_post(*request), concurrency=concurrency, duration=seconds, warmup=warmup,
                      connect=http_connect(limit=concurrency))  # fmt: skip
    if report.failed:
        raise RuntimeError(f"{report.failed} requests failed: {report.error_messages}")
    return report
