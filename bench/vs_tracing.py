"""What tracing costs: lenet5 with tracing off, beside the same server tracing one request in
1000 and every request, to Triton's JSON file and as OpenTelemetry spans, taking turns, in one
run.

    python -m bench.vs_tracing [--callers 1,32] [--seconds 6] [--rounds 2]

Each configuration is its own ``cnnserve serve`` subprocess; the spans go over OTLP/HTTP to a
receiver on a thread of this process that reads each export and answers it (a collector that
keeps up), the files to a temporary folder. Read the ratios: on a machine with few cores the
client's own process and the receiver compete with the server.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, LoadReport, closed_loop, ensure_exported, infer_request, progress, running_server


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


def configurations(url: str, folder: Path) -> dict[str, tuple[str, ...]]:
    on = ("--trace-config", "level=TIMESTAMPS")
    otel = (*on, "--trace-config", "mode=opentelemetry", "--trace-config", f"opentelemetry,url={url}")
    file = (*on, "--trace-config", "triton,log-frequency=1000")
    return {
        "off": (),
        "triton file, rate 1000": (*file, "--trace-config", f"triton,file={folder / 'r1000.json'}"),
        "triton file, rate 1": (*file, "--trace-config", f"triton,file={folder / 'r1.json'}", "--trace-config",
                                "rate=1"),
        "opentelemetry, rate 1000": otel,
        "opentelemetry, rate 1": (*otel, "--trace-config", "rate=1"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--callers", default="1,32", help="closed-loop callers, comma-separated (default: 1,32)")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ensure_exported(args.repo, "lenet5")
    callers = [int(c) for c in args.callers.split(",")]
    request = infer_request("lenet5", "input", np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32))
    results: dict[tuple[str, int], list[LoadReport]] = {}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(collector())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        servers = {name: stack.enter_context(running_server(args.repo, "--model", "lenet5", *flags))
                   for name, flags in configurations(url, folder).items()}  # fmt: skip
        for round_ in range(args.rounds):
            for n in callers:
                for name, address in servers.items():
                    progress(f"round {round_ + 1}/{args.rounds}: {name}, {n} callers")
                    report = closed_loop(address, request, concurrency=n, seconds=args.seconds, connections=n)
                    results.setdefault((name, n), []).append(report)

    print(f"lenet5, V2 ModelInfer; best of {args.rounds} rounds of {args.seconds:g} s each")
    print(f"{'':28}{'callers':>8}{'requests/s':>12}{'/off':>7}{'p50 ms':>9}{'p50 - off':>11}")
    for n in callers:
        rate_off = max(r.requests_per_second for r in results[("off", n)])
        p50_off = min(r.percentile(50) for r in results[("off", n)]) * 1e3
        for name in servers:
            reports = results[(name, n)]
            rate = max(r.requests_per_second for r in reports)
            p50 = min(r.percentile(50) for r in reports) * 1e3
            print(f"{name:<28}{n:>8}{rate:>12,.0f}{rate / rate_off:>7.3f}{p50:>9.3f}{p50 - p50_off:>+11.3f}")


if __name__ == "__main__":
    main()
