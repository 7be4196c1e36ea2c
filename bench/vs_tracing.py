"""What tracing costs: lenet5 with tracing off, one request in 1000 traced and every request
traced, to Triton's JSON file and as OpenTelemetry spans, taking turns, in one run.

    python -m bench.vs_tracing [--callers 1,32] [--seconds 5] [--rounds 3] [--settle 2]

Two ``cnnserve serve`` subprocesses, one per mode, each switched between off, rate 1000 and rate
1 through the trace-setting API (``POST /v2/trace/setting``) between measurements: each ratio
compares a server with itself, as fresh server processes differ by more than what is measured
here. The spans go over OTLP/HTTP to a receiver on a thread of this process that reads each
export and answers it (a collector that keeps up), the file to a temporary folder. On a machine
with few cores the client's own process and the receiver compete with the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, LoadReport, closed_loop, ensure_exported, infer_request, progress, serving_with_http

LEVELS = {"off": {"trace_level": ["OFF"]}, "rate 1000": {"trace_level": ["TIMESTAMPS"], "trace_rate": "1000"},
          "rate 1": {"trace_level": ["TIMESTAMPS"], "trace_rate": "1"}}  # fmt: skip


@contextlib.contextmanager
def collector() -> Iterator[str]:
    """An OTLP/HTTP endpoint that takes every export; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector serves the exporter

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


def set_tracing(http: str, settings: dict[str, Any]) -> None:
    request = urllib.request.Request(f"http://{http}/v2/trace/setting", data=json.dumps(settings).encode(),
                                     method="POST")  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200, reply.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--callers", default="1,32", help="closed-loop callers, comma-separated (default: 1,32)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of quiet before each measurement")
    args = parser.parse_args()
    ensure_exported(args.repo, "lenet5")
    callers = [int(c) for c in args.callers.split(",")]
    request = infer_request("lenet5", "input", np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32))
    results: dict[tuple[str, str, int], list[LoadReport]] = {}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(collector())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        modes = {
            "triton file": ("--trace-config", f"triton,file={folder / 'trace.json'}", "--trace-config",
                            "triton,log-frequency=1000"),
            "opentelemetry": ("--trace-config", "mode=opentelemetry", "--trace-config", f"opentelemetry,url={url}"),
        }  # fmt: skip
        servers = {mode: stack.enter_context(serving_with_http(args.repo, "--model", "lenet5", *flags))
                   for mode, flags in modes.items()}  # fmt: skip
        levels = list(LEVELS)
        for round_ in range(args.rounds):
            # Each round in another order, each measurement after a pause: a server's spans and
            # files are still being sent and written for a while after its load.
            order = levels[round_ % len(levels) :] + levels[: round_ % len(levels)]
            for n in callers:
                for mode, (grpc_address, http_address) in servers.items():
                    for level in order:
                        progress(f"round {round_ + 1}/{args.rounds}: {mode}, {level}, {n} callers")
                        set_tracing(http_address, LEVELS[level])
                        time.sleep(args.settle)
                        report = closed_loop(grpc_address, request, concurrency=n, seconds=args.seconds,
                                             connections=n)  # fmt: skip
                        results.setdefault((mode, level, n), []).append(report)
                    set_tracing(http_address, LEVELS["off"])

    print(f"lenet5, V2 ModelInfer; best of {args.rounds} rounds of {args.seconds:g} s; each against its own server off")
    print(f"{'':30}{'callers':>8}{'requests/s':>12}{'/off':>7}{'p50 ms':>9}{'p50 - off':>11}")
    for n in callers:
        for mode in servers:
            off = results[(mode, "off", n)]
            rate_off = max(r.requests_per_second for r in off)
            p50_off = min(r.percentile(50) for r in off) * 1e3
            for level in levels:
                reports = results[(mode, level, n)]
                rate = max(r.requests_per_second for r in reports)
                p50 = min(r.percentile(50) for r in reports) * 1e3
                name = f"{mode}, {level}"
                print(f"{name:<30}{n:>8}{rate:>12,.0f}{rate / rate_off:>7.3f}{p50:>9.3f}{p50 - p50_off:>+11.3f}")


if __name__ == "__main__":
    main()
