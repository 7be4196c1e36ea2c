"""The server's tracer: which requests are traced (:mod:`.sampler`), the settings clients change
at run time (:mod:`.config`), and where a finished trace goes: Triton's JSON file (written off
the event loop) or OpenTelemetry spans over OTLP (:mod:`.otel`, built and sent on threads of
their own)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnserve.server.tracing.config import TraceSettings, TraceTable, from_entries
from cnnserve.server.tracing.record import Parent, Trace
from cnnserve.server.tracing.sampler import Sampler
from cnnserve.server.tracing.triton_file import TritonFile

log = logging.getLogger("cnnserve.tracing")


class Tracer:
    def __init__(self, entries: Sequence[str] = (), worker: int | None = None) -> None:
        """``worker``: this process's number among several. Each worker writes a trace file of
        its own, ``FILE.worker-N``, so that none writes over another's, and says which it is on
        its spans."""
        settings = from_entries(entries)
        if settings.mode == "triton" and settings.level != "OFF" and not settings.file:
            raise ValueError("--trace-config level=TIMESTAMPS: give triton,file=PATH, where the traces go")
        self.table = TraceTable(settings)
        self.sampler = Sampler(self.table)
        path = settings.file if worker is None else f"{settings.file}.worker-{worker}"
        self.file = TritonFile(path, settings.log_frequency) if settings.file and settings.mode == "triton" else None
        self.spans = _otel(settings, worker) if settings.mode == "opentelemetry" else None
        self._writes: set[asyncio.Future[None]] = set()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def begin(self, model: str, protocol: str, api: str, first: str, traceparent: str | None = None) -> Trace | None:
        """A trace for this request of ``model``, stamped ``first``, when it is sampled (a
        ``traceparent`` whose sampled flag is set always is); else None. Call only while
        ``table.active``."""
        parent = Parent.parse(traceparent) if traceparent else None
        if not self.sampler.take(model, propagated=parent is not None and parent.sampled):
            return None
        trace = Trace(model, "", protocol, api, parent=parent)
        trace.stamp(first)
        return trace

    def finish(self, trace: Trace, code: str = "OK", message: str = "") -> None:
        """The request ended with status ``code`` (a gRPC status name, as the metrics count it)."""
        if code != "OK":
            trace.error = f"{code}: {message}" if message else code
        if self.spans is not None:
            self.spans.add(trace)
        if self.file is not None:
            due = self.file.add(trace)
            if due is not None:
                self._write(*due)

    # The trace-setting API's side.

    def settings(self, model: str = "") -> TraceSettings:
        return self.table.of(model)

    def change(self, given: Mapping[str, Any], model: str = "") -> TraceSettings:
        """A client's change (ValueError naming what is wrong, and nothing changed); counting
        starts again for what it touched, and the listeners (the other workers) hear of it."""
        if self.file is None and self.spans is None and given.get("trace_level") not in (None, "OFF", ["OFF"]):
            raise ValueError("trace setting 'trace_level': this server has nowhere to put traces; start it with "
                             "--trace-config triton,file=PATH or --trace-config mode=opentelemetry")  # fmt: skip
        settings = self.table.change(given, model)
        self.sampler.reset(model)
        state = self.table.state()
        for listener in self._listeners:
            listener(state)
        return settings

    def restore(self, state: Mapping[str, Any]) -> None:
        """Another worker's settings (ValueError when they are not)."""
        self.table.restore(state)
        self.sampler.reset()

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    def _write(self, path: Path, text: str) -> None:
        future = asyncio.get_running_loop().run_in_executor(None, _write_file, path, text)
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        """Write what is left (at shutdown), wait for the writes under way, and send the spans
        not sent yet (for a bounded time: a collector that is down must not hold the stop)."""
        if self.file is not None:
            due = self.file.close()
            if due is not None:
                await asyncio.to_thread(_write_file, *due)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.spans is not None:
            await self.spans.close()


def _otel(settings: TraceSettings, worker: int | None) -> Any:
    try:
        from cnnserve.server.tracing.otel import SpanExport
    except ImportError as exc:  # a trimmed install: say what is missing, at start
        raise ValueError(f"--trace-config mode=opentelemetry needs the OpenTelemetry SDK and its OTLP exporters "
                         f"(pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc "
                         f"opentelemetry-exporter-otlp-proto-http): {exc}") from None  # fmt: skip
    return SpanExport(settings, worker)


def _write_file(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # a trace file that cannot be written must not stop serving
        log.error("cannot write the trace file %s: %s", path, exc)
