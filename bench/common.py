"""Shared pieces of the benchmarks: a server subprocess, a closed-loop gRPC load, percentiles."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from server.generated.cnnserve.v1 import service_pb2 as v1_pb
from server.generated.cnnserve.v1 import service_pb2_grpc as v1_pb_grpc
from server.generated.inference import grpc_service_pb2 as pb
from server.generated.inference import grpc_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_exported(repo: Path, *names: str) -> None:
    missing = [n for n in names if not (repo / n / "config.json").is_file()]
    if missing:
        progress(f"exporting {', '.join(missing)} into {repo}/ ...")
        subprocess.run([sys.executable, "-m", "server.cli", "export", "--repo", str(repo), *missing], check=True)


@contextmanager
def running_server(repo: Path, *args: str) -> Iterator[str]:
    """``cnnserve serve`` on a free port; yields its gRPC address once it is ready."""
    command = [sys.executable, "-m", "server.cli", "serve", "--repo", str(repo), "--host", "127.0.0.1",
               "--grpc-port", "0", "--metrics-port", "-1", "--log-level", "warning", *args]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    address = ""
    for line in process.stdout:
        found = re.search(r"cnnserve listening: grpc=(\S+)", line)
        address = found.group(1) if found else address
        if line.startswith("cnnserve ready:"):
            break
    if not address:
        process.kill()
        raise RuntimeError("the server did not start; run `cnnserve serve` by hand to see why")
    try:
        yield address
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


@dataclass
class LoadResult:
    requests: int
    items: int
    seconds: float
    latencies: np.ndarray  # seconds, one per request

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies, p))


def closed_loop(address: str, request: pb.ModelInferRequest | v1_pb.ClassifyRequest, *, concurrency: int,
                seconds: float, items_per_request: int = 1, warmup: float = 1.0) -> LoadResult:  # fmt: skip
    """``concurrency`` callers, each sending the next request (ModelInfer or Classify, by the
    request's type) as soon as its last one returns."""

    async def main() -> LoadResult:
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            call: Any = (
                v1_pb_grpc.CnnServeStub(channel).Classify
                if isinstance(request, v1_pb.ClassifyRequest)
                else pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
            )
            latencies: list[float] = []
            measuring = False
            stop_at = 0.0

            async def caller() -> None:
                while True:
                    started = time.perf_counter()
                    if stop_at and started >= stop_at:
                        return
                    await call(request)
                    if measuring:
                        latencies.append(time.perf_counter() - started)

            stop_at = time.perf_counter() + warmup + seconds
            tasks = [asyncio.create_task(caller()) for _ in range(concurrency)]
            await asyncio.sleep(warmup)
            measuring = True
            began = time.perf_counter()
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - began
        return LoadResult(len(latencies), len(latencies) * items_per_request, elapsed, np.array(latencies))

    return asyncio.run(main())
