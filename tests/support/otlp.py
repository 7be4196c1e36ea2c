"""A real OTLP trace receiver for the tests: opentelemetry-proto's TraceService over gRPC, on a
free loopback port, keeping every span it is sent (as a collector's first hop would)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass
class Span:
    name: str
    trace_id: str  # hex, as W3C writes it
    span_id: str
    parent_id: str  # "" for a root
    start_ns: int
    end_ns: int
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, int]]
    links: list[tuple[str, str]]  # (trace id, span id) of each span it links to
    status: tuple[int, str]


@dataclass
class Receiver:
    port: int
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def take(self, request: pb.ExportTraceServiceRequest) -> None:
        got = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    got.append(Span(
                        s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.start_time_unix_nano,
                        s.end_time_unix_nano, s.kind, {a.key: _value(a.value) for a in s.attributes}, resource,
                        [(e.name, e.time_unix_nano) for e in s.events],
                        [(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                        (s.status.code, s.status.message),
                    ))  # fmt: skip
        with self.lock:
            self.spans += got

    def wait(self, until: Callable[[list[Span]], bool], timeout: float = 30) -> list[Span]:
        """The spans received, once ``until`` holds of them (AssertionError after ``timeout``)."""
        stop = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if until(spans):
                return spans
            if time.monotonic() > stop:
                raise AssertionError(f"{len(spans)} spans received in {timeout} s, not what was waited for: "
                                     f"{sorted({s.name for s in spans})}")  # fmt: skip
            time.sleep(0.05)


class _Service(pb_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: pb.ExportTraceServiceRequest, context: grpc.ServicerContext) -> Any:
        self.receiver.take(request)
        return pb.ExportTraceServiceResponse()


@contextlib.contextmanager
def otlp_receiver(port: int = 0) -> Iterator[Receiver]:
    """A receiver on ``port`` (0: a free one), stopped on leaving."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    receiver = Receiver(bound)
    pb_grpc.add_TraceServiceServicer_to_server(_Service(receiver), server)
    server.start()
    try:
        yield receiver
    finally:
        server.stop(grace=None)


def free_port() -> int:
    """A loopback port nothing listens on (for the collector that is down)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
