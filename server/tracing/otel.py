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
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace as api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import cnnserve
from cnnserve.server.tracing import record
from cnnserve.server.tracing.config import TraceSettings
from cnnserve.server.tracing.record import Batch, Trace

log = logging.getLogger("cnnserve.tracing")
# The model span's own stamps; the runs' are the compute spans'; the rest are the call's.
_MODEL = frozenset((record.REQUEST_START, record.QUEUE_START, record.REQUEST_END))
_COMPUTE = frozenset(record.COMPUTE)
_SHUTDOWN_SECONDS = 5.0


def _protocol() -> str:
    """The OTLP protocol the environment asks for (the settings checked it: otel_problem)."""
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )


def exporter(url: str) -> tuple[SpanExporter, str]:
    """The OTLP exporter for ``url`` ("" for the SDK's default or OTEL_EXPORTER_OTLP_*), over
    HTTP (Triton's, the default) or gRPC; and where it sends, for the log."""
    protocol = _protocol()
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
    traces are dropped, and said so once), a thread that builds the spans, the SDK's processor."""

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
        self.provider = TracerProvider(resource=Resource.create(attributes), sampler=ALWAYS_ON)
        self.processor = BatchSpanProcessor(
            span_exporter,
            max_queue_size=settings.bsp_max_queue_size or None,
            schedule_delay_millis=settings.bsp_schedule_delay or None,
            max_export_batch_size=settings.bsp_max_export_batch_size or None,
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("cnnserve", cnnserve.__version__)
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
                self.build(trace)
            except Exception:  # one bad trace must not end the thread
                log.exception("tracing: cannot make the spans of trace %d", trace.id)

    def build(self, t: Trace) -> None:
        """The spans of one trace, ended with their own times (the monotonic clock's stamps on the
        wall clock, as OTLP takes them)."""
        wall = self._wall()
        stamps = sorted(t.stamps, key=lambda s: s[1])
        if not stamps:
            return
        common: dict[str, Any] = {"model_name": t.model, "model_version": t.version, "process.pid": self.pid}
        if self.worker is not None:
            common["cnnserve.worker"] = self.worker
        call_attributes = {**common, "protocol": t.protocol, "rpc": t.api}
        if t.request_id:
            call_attributes["request_id"] = t.request_id
        context = None
        if t.parent is not None:
            remote = api.SpanContext(t.parent.trace_id, t.parent.span_id, is_remote=True,
                                     trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED))  # fmt: skip
            context = api.set_span_in_context(api.NonRecordingSpan(remote))
        call = self.tracer.start_span(t.api or "infer", context, api.SpanKind.SERVER, call_attributes,
                                      start_time=stamps[0][1] + wall)  # fmt: skip
        for name, ns in stamps:
            if name not in _MODEL and name not in _COMPUTE:
                call.add_event(name, timestamp=ns + wall)
        if t.error:
            call.set_status(api.Status(api.StatusCode.ERROR, t.error))
        in_call = api.set_span_in_context(call)
        model_stamps = [s for s in stamps if s[0] in _MODEL]
        if model_stamps:
            model = self.tracer.start_span(t.model, in_call, attributes=common, start_time=model_stamps[0][1] + wall)
            for name, ns in model_stamps:
                model.add_event(name, timestamp=ns + wall)
            in_model = api.set_span_in_context(model)
            for batch, position in t.runs:
                self._compute(batch.stamps, in_model, wall, common, batch, position)
            inline = [s for s in stamps if s[0] in _COMPUTE]
            if inline:  # a lone request run at once, not queued: no batch of its own
                self._compute(inline, in_model, wall, common)
            model.end(end_time=model_stamps[-1][1] + wall)
        call.end(end_time=stamps[-1][1] + wall)

    def _wall(self) -> int:
        """The wall clock less the monotonic one, read again each minute: fixed in between, so
        that stamps shared by several traces (a run's) land at one time in each."""
        now = time.monotonic_ns()
        if now - self._wall_read > 60_000_000_000:
            self._wall_offset, self._wall_read = time.time_ns() - time.monotonic_ns(), now
        return self._wall_offset

    def _compute(self, stamps: list[tuple[str, int]], context: Any, wall: int, common: dict[str, Any],
                 batch: Batch | None = None, position: int = 0) -> None:  # fmt: skip
        attributes = dict(common)
        links = []
        if batch is not None:
            attributes.update({"batch_size": batch.size, "batch_requests": batch.requests,
                               "batch_position": position, "instance": batch.instance})  # fmt: skip
            links.append(api.Link(self._batch_span(batch, common, wall)))
        else:
            attributes.update({"batch_size": 1, "batch_requests": 1, "batch_position": 0, "inline": True})
        span = self.tracer.start_span("compute", context, attributes=attributes, links=links,
                                      start_time=stamps[0][1] + wall)  # fmt: skip
        for name, ns in stamps:
            span.add_event(name, timestamp=ns + wall)
        span.end(end_time=stamps[-1][1] + wall)

    def _batch_span(self, batch: Batch, common: dict[str, Any], wall: int) -> api.SpanContext:
        """The run's own span (a trace of its own), made by the first of its requests built."""
        if batch.span is None:
            attributes = {**common, "batch_size": batch.size, "batch_requests": batch.requests,
                          "instance": batch.instance, "batch_id": batch.id}  # fmt: skip
            span = self.tracer.start_span("batch", Context(), attributes=attributes,
                                          start_time=batch.stamps[0][1] + wall)  # fmt: skip
            for name, ns in batch.stamps:
                span.add_event(name, timestamp=ns + wall)
            span.end(end_time=batch.stamps[-1][1] + wall)
            batch.span = span.get_span_context()
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
        self.provider.shutdown()
