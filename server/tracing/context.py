"""The trace of the request being handled, where one is: the front end that sampled it sets it
for the request's task, and the stages it passes through stamp it without being handed it (as
OpenTelemetry's own context travels). A request that is not traced pays one lookup per stage."""

from __future__ import annotations

from contextvars import ContextVar

from cnnserve.server.tracing.record import Trace

CURRENT: ContextVar[Trace | None] = ContextVar("cnnserve_trace", default=None)


def stamp(name: str) -> None:
    trace = CURRENT.get()
    if trace is not None:
        trace.stamp(name)
