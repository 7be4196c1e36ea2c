"""Traces as OpenTelemetry spans, exported over OTLP (``--trace-config mode=opentelemetry``).

Per traced request, as Triton's: a server span for the call (its front-end stamps as events), a
child span for the model (REQUEST_START to REQUEST_END, queueing in it) and a grandchild per run
it rode in (COMPUTE_START to COMPUTE_END, the batch's size, the request's place in it and the
instance), linked to that run's own span: one per run, shared by every traced request in it.

The event loop only hands a finished trace over: spans are built on a thread of this module's
and sent by the SDK's batch span processor on its own, so a slow or absent collector never holds
a request. The collector's endpoint, protocol, headers and timeout come from ``opentelemetry,url``
and the standard ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace as api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Status, StatusCode

import cnnserve
from cnnserve.server.tracing import record
from cnnserve.server.tracing.config import TraceSettings, otlp_protocol
from cnnserve.server.tracing.record import Batch, Trace

log = logging.getLogger("cnnserve.tracing")
# The model span's own stamps; the runs' are the compute spans'; the rest are the call's.
_MODEL = frozenset((record.REQUEST_START, record.QUEUE_START, record.REQUEST_END))
_COMPUTE = frozenset(record.COMPUTE)
_SHUTDOWN_SECONDS = 5.0
_SAMPLED = api.TraceFlags(api.TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


def exporter(url: str) -> tuple[SpanExporter, str]:
    """The OTLP exporter for ``url`` ("" for the SDK's default or OTEL_EXPORTER_OTLP_*), over
    HTTP (Triton's, the default) or gRPC; and where it sends, for the log."""
    protocol = otlp_protocol()  # the settings checked it (otel_problem)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        inner: Any = Grpc(endpoint=url or None)
        where = url or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")  # fmt: skip
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        inner = Http(endpoint=url or None)
        where = str(getattr(inner, "_endpoint", url))
    # The SDK's exporters log every failed try; _Reporting says it once per outage instead.
    logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
    return _Reporting(inner, f"{where} (OTLP over {protocol})"), f"{where} over {protocol}"


def _id(bits: int) -> int:
    """A random trace (128 bits) or span (64) id, as the SDK's own generator makes them."""
    return random.getrandbits(bits) or 1


class _Reporting(SpanExporter):
    """An exporter that logs when the collector stops answering and when it answers again, and
    is otherwise the one it wraps."""

    def __init__(self, inner: SpanExporter, where: str) -> None:
        self.inner = inner
        self.where = where
        self.failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is SpanExportResult.FAILURE and not self.failing:
            self.failing = True
            log.error("cannot export traces to %s; spans are dropped until it answers", self.where)
        elif result is SpanExportResult.SUCCESS and self.failing:
            self.failing = False
            log.info("exporting traces to %s again", self.where)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class SpanExport:
    """Finished traces in, spans out: a queue (bounded like the span processor's: beyond it
    traces are dropped, and said so once), a thread that builds the spans, the SDK's processor.

    The spans are made finished (the SDK's ``ReadableSpan``, what a span processor is handed when a
    span ends) rather than started and ended through a tracer: every time is known when a trace is
    built, and a live span's locks, limits and callbacks cost a request's worth of CPU each."""

    def __init__(self, settings: TraceSettings, worker: int | None) -> None:
        span_exporter, self.where = exporter(settings.url)
        attributes: dict[str, Any] = {"service.name": os.environ.get("OTEL_SERVICE_NAME", "cnnserve"),
                                      "service.version": cnnserve.__version__, "process.pid": os.getpid()}  # fmt: skip
        if worker is not None:
            attributes["cnnserve.worker"] = worker
        for entry in settings.resource:
            key, _, value = entry.partition("=")
            attributes[key] = value
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; the settings' win.
        self.resource = Resource.create(attributes)
        self.scope = InstrumentationScope("cnnserve", cnnserve.__version__)
        self.processor = BatchSpanProcessor(
            span_exporter,
            max_queue_size=settings.bsp_max_queue_size or None,
            schedule_delay_millis=settings.bsp_schedule_delay or None,
            max_export_batch_size=settings.bsp_max_export_batch_size or None,
        )
        self.pid = os.getpid()
        self.worker = worker
        self._queue: queue.Queue[Trace | None] = queue.Queue(maxsize=settings.bsp_max_queue_size or 2048)
        self._full = False
        self._wall_offset, self._wall_read = time.time_ns() - time.monotonic_ns(), time.monotonic_ns()
        self._thread = threading.Thread(target=self._build_all, name="cnnserve-spans", daemon=True)
        self._thread.start()
        log.info("tracing: spans go to %s", self.where)

    def add(self, trace: Trace) -> None:
        try:
            self._queue.put_nowait(trace)
            self._full = False
        except queue.Full:
            if not self._full:
                self._full = True
                log.warning("tracing: %d traces wait to become spans; traces are dropped until they are",
                            self._queue.maxsize)  # fmt: skip

    def _build_all(self) -> None:
        while (trace := self._queue.get()) is not None:
            try:
                for span in self.build(trace):
                    self.processor.on_end(span)
            except Exception:  # one bad trace must not end the thread
                log.exception("tracing: cannot make the spans of trace %d", trace.id)

    def build(self, t: Trace) -> list[ReadableSpan]:
        """The spans of one trace (and of the runs it rode in, the first time one is met), with
        the monotonic clock's stamps on the wall clock, as OTLP takes them."""
        wall = self._wall()
        stamps = sorted(t.stamps, key=lambda s: s[1])
        if not stamps:
            return []
        common: dict[str, Any] = {"model_name": t.model, "model_version": t.version, "process.pid": self.pid}
        if self.worker is not None:
            common["cnnserve.worker"] = self.worker
        call_attributes = {**common, "protocol": t.protocol, "rpc": t.api}
        if t.request_id:
            call_attributes["request_id"] = t.request_id
        parent = None
        if t.parent is not None:
            parent = api.SpanContext(t.parent.trace_id, t.parent.span_id, True, _SAMPLED)
        trace_id = t.parent.trace_id if t.parent is not None else _id(128)
        spans: list[ReadableSpan] = []
        call = self._span(spans, t.api or "infer", trace_id, parent, call_attributes, wall,
                          [s for s in stamps if s[0] not in _MODEL and s[0] not in _COMPUTE], stamps,
                          api.SpanKind.SERVER, Status(StatusCode.ERROR, t.error) if t.error else _UNSET)  # fmt: skip
        model_stamps = [s for s in stamps if s[0] in _MODEL]
        if model_stamps:
            model = self._span(spans, t.model, trace_id, call, common, wall, model_stamps)
            for batch, position in t.runs:
                attributes = {**common, "batch_size": batch.size, "batch_requests": batch.requests,
                              "batch_position": position, "instance": batch.instance}  # fmt: skip
                link = api.Link(self._batch_span(spans, batch, common, wall))
                self._span(spans, "compute", trace_id, model, attributes, wall, batch.stamps, links=(link,))
            inline = [s for s in stamps if s[0] in _COMPUTE]
            if inline:  # a lone request run at once, not queued: no batch of its own
                attributes = {**common, "batch_size": 1, "batch_requests": 1, "batch_position": 0, "inline": True}
                self._span(spans, "compute", trace_id, model, attributes, wall, inline)
        return spans

    def _span(self, spans: list[ReadableSpan], name: str, trace_id: int, parent: api.SpanContext | None,
              attributes: dict[str, Any], wall: int, events: list[tuple[str, int]],
              extent: list[tuple[str, int]] | None = None, kind: api.SpanKind = api.SpanKind.INTERNAL,
              status: Status = _UNSET, links: tuple[api.Link, ...] = ()) -> api.SpanContext:  # fmt: skip
        """A finished span from ``events`` (its extent's first and last stamps: the events' own
        unless ``extent`` is given), added to ``spans``; its context, for its children."""
        extent = extent or events
        context = api.SpanContext(trace_id, _id(64), False, _SAMPLED)
        spans.append(ReadableSpan(
            name, context, parent, self.resource, attributes,
            [Event(stamp, None, ns + wall) for stamp, ns in events], links, kind, None, status,
            extent[0][1] + wall, extent[-1][1] + wall, self.scope,
        ))  # fmt: skip
        return context

    def _wall(self) -> int:
        """The wall clock less the monotonic one, read again each minute: fixed in between, so
        that stamps shared by several traces (a run's) land at one time in each."""
        now = time.monotonic_ns()
        if now - self._wall_read > 60_000_000_000:
            self._wall_offset, self._wall_read = time.time_ns() - time.monotonic_ns(), now
        return self._wall_offset

    def _batch_span(self, spans: list[ReadableSpan], batch: Batch, common: dict[str, Any], wall: int
                    ) -> api.SpanContext:  # fmt: skip
        """The run's own span (a trace of its own), made by the first of its requests built."""
        if batch.span is None:
            attributes = {**common, "batch_size": batch.size, "batch_requests": batch.requests,
                          "instance": batch.instance, "batch_id": batch.id}  # fmt: skip
            batch.span = self._span(spans, "batch", _id(128), None, attributes, wall, batch.stamps)
        return batch.span

    async def close(self) -> None:
        """Build what is queued and send it, for at most a few seconds."""
        self._queue.put(None)  # after every trace queued: the thread builds them first
        done = threading.Thread(target=self._shutdown, name="cnnserve-spans-stop", daemon=True)
        done.start()
        # Not asyncio.to_thread: a thread stuck on a dead collector would hold the interpreter's exit.
        stop = time.monotonic() + _SHUTDOWN_SECONDS
        while done.is_alive() and time.monotonic() < stop:
            await asyncio.sleep(0.05)
        if done.is_alive():
            log.warning("tracing: spans not sent to %s within %.0f s of stopping; dropped", self.where,
                        _SHUTDOWN_SECONDS)  # fmt: skip

    def _shutdown(self) -> None:
        self._thread.join()
        self.processor.shutdown()
