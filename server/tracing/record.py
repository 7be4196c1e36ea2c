"""One traced request: its stages' timestamps by Triton's names, the runs it rode in, and who
served it. Made only for sampled requests: the hot path of the rest checks one attribute."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

# Triton's timestamp names, in the order a request meets them. The front ends' come first and
# last: a gRPC request is read and parsed by grpc before its handler starts, so its first stamp is
# GRPC_WAITREAD_END; grpc sends the reply after the handler returns, so its last is
# GRPC_SEND_START.
HTTP_RECV_START = "HTTP_RECV_START"
HTTP_RECV_END = "HTTP_RECV_END"
GRPC_WAITREAD_END = "GRPC_WAITREAD_END"
REQUEST_START = "REQUEST_START"
QUEUE_START = "QUEUE_START"
COMPUTE_START = "COMPUTE_START"
COMPUTE_INPUT_END = "COMPUTE_INPUT_END"
COMPUTE_OUTPUT_START = "COMPUTE_OUTPUT_START"
COMPUTE_END = "COMPUTE_END"
REQUEST_END = "REQUEST_END"
HTTP_SEND_START = "HTTP_SEND_START"
HTTP_SEND_END = "HTTP_SEND_END"
GRPC_SEND_START = "GRPC_SEND_START"
# cnnserve's own, in Triton's style: the request's tensors checked and decoded (V2), its images
# decoded and resized (Classify), its position read into feature planes (Policy), the reply built.
DECODE_START = "DECODE_START"
DECODE_END = "DECODE_END"
IMAGE_DECODE_START = "IMAGE_DECODE_START"
IMAGE_DECODE_END = "IMAGE_DECODE_END"
PLANES_START = "PLANES_START"
PLANES_END = "PLANES_END"
ENCODE_START = "ENCODE_START"
ENCODE_END = "ENCODE_END"
ORDER = (HTTP_RECV_START, HTTP_RECV_END, GRPC_WAITREAD_END, DECODE_START, IMAGE_DECODE_START, PLANES_START,
         DECODE_END, IMAGE_DECODE_END, PLANES_END, REQUEST_START, QUEUE_START, COMPUTE_START, COMPUTE_INPUT_END,
         COMPUTE_OUTPUT_START, COMPUTE_END, REQUEST_END, ENCODE_START, ENCODE_END, HTTP_SEND_START, HTTP_SEND_END,
         GRPC_SEND_START)  # fmt: skip
# The stamps of one run of the model, shared by the requests that rode in it.
COMPUTE = (COMPUTE_START, COMPUTE_INPUT_END, COMPUTE_OUTPUT_START, COMPUTE_END)

_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class Batch:
    """One run of a model that traced requests rode in: shared by them, stamped once."""

    id: int
    size: int  # items in the run
    requests: int
    instance: int = 0  # the model's instance that ran it
    stamps: list[tuple[str, int]] = field(default_factory=list)
    # The OpenTelemetry exporter's span for this run, made by the first of its requests exported
    # and linked from each of them.
    span: Any = None

    def stamp(self, name: str, ns: int | None = None) -> None:
        self.stamps.append((name, time.monotonic_ns() if ns is None else ns))


@dataclass(frozen=True, slots=True)
class Parent:
    """A W3C ``traceparent`` the client sent: the trace this request continues."""

    trace_id: int
    span_id: int
    sampled: bool

    @classmethod
    def parse(cls, header: str | None) -> Parent | None:
        """``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``; None for anything else (the
        W3C rule: an unreadable traceparent is ignored, and the request starts a trace of its own)."""
        if not header or len(header) < 55 or header[2] != "-" or header[35] != "-" or header[52] != "-":
            return None
        version, trace_id, span_id, flags = header[:2], header[3:35], header[36:52], header[53:55]
        try:
            parsed = cls(int(trace_id, 16), int(span_id, 16), bool(int(flags, 16) & 1))
            int(version, 16)
        except ValueError:
            return None
        if version == "ff" or (version == "00" and len(header) != 55) or not parsed.trace_id or not parsed.span_id:
            return None
        return parsed

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"


@dataclass(eq=False, slots=True)
class Trace:
    model: str
    version: str
    protocol: str  # "grpc" or "http"
    api: str = ""  # the RPC ("ModelInfer", "Classify", "Policy") or the REST route
    request_id: str = ""
    parent: Parent | None = None
    id: int = field(default_factory=lambda: next(_ids))
    stamps: list[tuple[str, int]] = field(default_factory=list)
    runs: list[tuple[Batch, int]] = field(default_factory=list)  # each run it rode in, and its first item's place
    error: str = ""  # the status it failed with, "" when answered

    def stamp(self, name: str, ns: int | None = None) -> None:
        self.stamps.append((name, time.monotonic_ns() if ns is None else ns))

    @property
    def batch(self) -> Batch | None:
        """The (first) run it rode in; None for a request run inline, alone."""
        return self.runs[0][0] if self.runs else None

    @property
    def position(self) -> int:
        return self.runs[0][1] if self.runs else 0

    def timestamps(self) -> list[tuple[str, int]]:
        """Every stamp, its runs' with the request's own, in time order."""
        shared = [stamp for batch, _ in self.runs for stamp in batch.stamps]
        return sorted([*self.stamps, *shared], key=lambda s: s[1])
