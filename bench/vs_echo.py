"""The server on LeNet-5 against a bare grpc.aio echo server receiving the same payload, one run.

    python bench/vs_echo.py [--concurrency 32] [--seconds 15]

Both servers run as subprocesses and are loaded by the same client code: throughput at
``--concurrency`` callers and p50 latency of a single caller. Targets on a two-core machine:
at least 0.7 of the echo's rate; single-request p50 within 0.5 ms of the echo's.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.common import (
    ROOT,
    LoadReport,
    closed_loop,
    ensure_exported,
    infer_request,
    progress,
    running_module,
    running_server,
)
from cnnserve.generated.inference import grpc_service_pb2 as pb


def running_echo(reply_floats: int) -> contextlib.AbstractContextManager[str]:
    return running_bare("--reply-floats", str(reply_floats))


@contextmanager
def running_bare(*flags: str, processes: int = 1) -> Iterator[str]:
    """``python -m bench.echo FLAGS`` (the echo, or the no-batcher server); yields its address.
    ``processes`` > 1: that many, sharing the first one's port (``SO_REUSEPORT``)."""
    with contextlib.ExitStack() as stack:
        if processes == 1:
            yield stack.enter_context(_bare(*flags))
            return
        address = stack.enter_context(_bare(*flags, "--reuse-port"))
        for _ in range(processes - 1):
            stack.enter_context(_bare(*flags, "--reuse-port", "--port", address.rpartition(":")[2]))
        yield address


def _bare(*flags: str) -> contextlib.AbstractContextManager[str]:
    return running_module("bench.echo", *flags)


def measure(
    address: str, request: pb.ModelInferRequest, concurrency: int, seconds: float
) -> tuple[LoadReport, LoadReport]:
    loaded = closed_loop(address, request, concurrency=concurrency, seconds=seconds)
    single = closed_loop(address, request, concurrency=1, seconds=seconds / 2)
    return loaded, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("server_args", nargs="*", help="extra `cnnserve serve` flags, after --")
    args = parser.parse_args()
    ensure_exported(args.repo, "lenet5")
    x = np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)
    request = infer_request("lenet5", "input", x)

    progress(f"echo server: {args.concurrency} callers, then 1")
    with running_echo(reply_floats=10) as address:
        echo, echo_single = measure(address, request, args.concurrency, args.seconds)
    progress(f"cnnserve, lenet5: {args.concurrency} callers, then 1")
    with running_server(args.repo, "--model", "lenet5", *args.server_args) as address:
        served, served_single = measure(address, request, args.concurrency, args.seconds)

    print(f"payload {request.ByteSize():,} bytes per request, reply 10 float32")
    print(f"{'':28}{'echo':>12}{'cnnserve':>12}{'ratio':>8}")
    print(
        f"{'requests/s at ' + str(args.concurrency) + ' callers':28}{echo.requests_per_second:>12,.0f}"
        f"{served.requests_per_second:>12,.0f}{served.requests_per_second / echo.requests_per_second:>8.3f}"
    )
    print(
        f"{'p50 ms at ' + str(args.concurrency) + ' callers':28}{echo.percentile(50) * 1e3:>12.2f}"
        f"{served.percentile(50) * 1e3:>12.2f}"
    )
    print(
        f"{'p50 ms, one caller':28}{echo_single.percentile(50) * 1e3:>12.3f}{served_single.percentile(50) * 1e3:>12.3f}"
        f"{'':>8}  difference {(served_single.percentile(50) - echo_single.percentile(50)) * 1e3:+.3f} ms"
    )
    print("targets: ratio >= 0.7 at load; one-caller p50 within 0.5 ms of the echo's")  # fmt: skip


if __name__ == "__main__":
    main()
