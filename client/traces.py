"""``cnnserve bench --trace``: where the slowest requests' time went, from the server's own spans.

bench sends a W3C ``traceparent`` with every request (a server traces those whatever its rate)
and listens for OTLP over HTTP, the protocol a server in ``--trace-config mode=opentelemetry``
exports by default, on ``--trace-listen``. After the load it waits for the spans of the slowest
requests and splits each one's time: outside the server (network, the client), reading and
decoding, queueing, compute (and the run it rode in), replying.
"""

from __future__ import annotations

import gzip
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

from cnnserve.client.channel import ClientError


def traceparent() -> tuple[str, str]:
    """A new sampled ``traceparent`` and its trace id (hex)."""
    trace_id = f"{secrets.randbits(128) or 1:032x}"
    return f"00-{trace_id}-{secrets.randbits(64) or 1:016x}-01", trace_id


@dataclass(frozen=True)
class ServerSpan:
    name: str
    parent: str
    span_id: str
    start: int
    end: int
    attributes: dict[str, Any]
    events: dict[str, int]  # first time of each stage


class Receiver:
    """An OTLP/HTTP trace receiver on its own thread, keeping the spans of the traces it is told
    to look for."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise ClientError(f"--trace-listen {address!r}: expected HOST:PORT")
        self.spans: dict[str, list[ServerSpan]] = {}  # trace id -> its spans
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    receiver.take(otlp.ExportTraceServiceRequest.FromString(body))
                except Exception as exc:  # a body that is not OTLP protobuf: say so to the exporter
                    self.send_error(400, f"not an OTLP protobuf trace export: {exc}")
                    return
                reply = otlp.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the bench's output is its report

        try:
            self.server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
        except OSError as exc:
            raise ClientError(f"--trace-listen {address}: cannot listen: {exc.strerror or exc}") from None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)
        self.thread.start()

    def take(self, request: otlp.ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for s in scope.spans:
                        events: dict[str, int] = {}
                        for e in s.events:
                            events.setdefault(e.name, e.time_unix_nano)
                        attributes = {a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                                      for a in s.attributes}  # fmt: skip
                        span = ServerSpan(s.name, s.parent_span_id.hex(), s.span_id.hex(), s.start_time_unix_nano,
                                          s.end_time_unix_nano, attributes, events)  # fmt: skip
                        self.spans.setdefault(s.trace_id.hex(), []).append(span)

    def wait(self, trace_ids: Iterable[str], seconds: float) -> None:
        """Until a server span of each of ``trace_ids`` is here, or ``seconds`` have passed."""
        wanted = set(trace_ids)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            with self.lock:
                if all(any(_is_server(s) for s in self.spans.get(t, ())) for t in wanted):
                    return
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _is_server(span: ServerSpan) -> bool:
    return "rpc" in span.attributes


def breakdown(spans: list[ServerSpan]) -> dict[str, Any] | None:
    """One request's stages, in ms, from its spans; None when its server span has not come."""
    roots = [s for s in spans if _is_server(s)]
    if not roots:
        return None
    root = roots[0]
    models = [s for s in spans if s.parent == root.span_id]
    computes = [s for m in models for s in spans if s.parent == m.span_id]
    model = models[0] if models else None

    def ms(a: int, b: int) -> float:
        return (b - a) / 1e6

    queued = model.events.get("QUEUE_START") if model else None
    queue = ms(queued, computes[0].start) if queued is not None and computes else 0.0
    compute = sum(ms(c.start, c.end) for c in computes)
    return {
        "server_ms": ms(root.start, root.end),
        "read_ms": ms(root.start, model.start) if model else float("nan"),
        "queue_ms": queue,
        "compute_ms": compute,
        "reply_ms": ms(model.end, root.end) if model else float("nan"),
        "batch_size": max((int(c.attributes.get("batch_size", 1)) for c in computes), default=0),
        "worker_pid": root.attributes.get("process.pid"),
    }


def traced_calls(target: Any, sent: list[tuple[float, float, str]]) -> Any:
    """``target.make_call`` with a fresh ``traceparent`` on each call; each answered call is
    appended to ``sent`` as (when it started, its latency, its trace id)."""

    def make(ch: Any) -> Any:
        method = target.method(ch)

        async def call() -> Any:
            header, trace_id = traceparent()
            started = time.perf_counter()
            result = await method(target.request, metadata=(("traceparent", header),))
            sent.append((started, time.perf_counter() - started, trace_id))
            return result

        return call

    return make
