"""Shared pieces of the benchmarks: a server subprocess, a closed-loop gRPC load, percentiles."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from client.bench import Request, Target
from client.channel import CHANNEL_OPTIONS
from client.loadgen import LoadReport, run_load
from cnnserve.generated.cnnserve.v1 import service_pb2 as v1_pb
from cnnserve.generated.inference import grpc_service_pb2 as pb

__all__ = ["CHANNEL_OPTIONS", "ROOT", "LoadReport", "closed_loop", "ensure_exported", "infer_request", "progress",
           "running_server", "serving_with_metrics"]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_exported(repo: Path, *names: str) -> None:
    missing = [n for n in names if not (repo / n / "config.json").is_file()]
    if missing:
        progress(f"exporting {', '.join(missing)} into {repo}/ ...")
        subprocess.run([sys.executable, "-m", "cnnserve", "export", "--repo", str(repo), *missing], check=True)


@contextmanager
def running_server(repo: Path, *args: str) -> Iterator[str]:
    """``cnnserve serve`` on a free port, metrics off; yields its gRPC address once it is ready."""
    with _serving(repo, "-1", *args) as (address, _):
        yield address


def serving_with_metrics(repo: Path, *args: str) -> contextlib.AbstractContextManager[tuple[str, str]]:
    """``cnnserve serve`` on free ports; yields its gRPC and metrics addresses once it is ready."""
    return _serving(repo, "0", *args)


@contextmanager
def _serving(repo: Path, metrics_port: str, *args: str) -> Iterator[tuple[str, str]]:
    command = [sys.executable, "-m", "cnnserve", "serve", "--repo", str(repo), "--host", "127.0.0.1",
               "--grpc-port", "0", "--metrics-port", metrics_port, "--http-port", "-1", "--log-level", "warning",
               *args]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    address = metrics = ""
    for line in process.stdout:
        found = re.search(r"cnnserve listening: grpc=(\S+) metrics=(\S+) http=\S+", line)
        address, metrics = (found.group(1), found.group(2)) if found else (address, metrics)
        if line.startswith("cnnserve ready:"):
            break
    if not address:
        process.kill()
        raise RuntimeError("the server did not start; run `cnnserve serve` by hand to see why")
    try:
        yield address, metrics
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
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
