"""The server's tracer: which requests are traced (:mod:`.sampler`), and where a finished trace
goes (Triton's JSON file, written off the event loop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from cnnserve.server.tracing import record
from cnnserve.server.tracing.config import TraceTable, from_entries
from cnnserve.server.tracing.record import Trace
from cnnserve.server.tracing.sampler import Sampler
from cnnserve.server.tracing.triton_file import TritonFile

log = logging.getLogger("cnnserve.tracing")


class Tracer:
    def __init__(self, entries: Sequence[str] = (), worker: int | None = None) -> None:
        """``worker``: this process's number among several; each writes a file of its own,
        ``FILE.worker-N``, so that none writes over another's."""
        settings = from_entries(entries)
        if settings.level != "OFF" and not settings.file:
            raise ValueError("--trace-config level=TIMESTAMPS: give triton,file=PATH, where the traces go")
        self.table = TraceTable(settings)
        self.sampler = Sampler(self.table)
        path = settings.file if worker is None else f"{settings.file}.worker-{worker}"
        self.file = TritonFile(path, settings.log_frequency) if settings.file else None
        self._writes: set[asyncio.Future[None]] = set()

    def start(self, model: str, version: str, protocol: str, request_id: str = "") -> Trace | None:
        """A trace for this request, stamped REQUEST_START, when it is sampled; else None."""
        if not self.table.active or not self.sampler.take(model):
            return None
        trace = Trace(model, version, protocol, request_id)
        trace.stamp(record.REQUEST_START)
        return trace

    def finish(self, trace: Trace) -> None:
        trace.stamp(record.REQUEST_END)
        if self.file is None:
            return
        due = self.file.add(trace)
        if due is not None:
            self._write(*due)

    def _write(self, path: Path, text: str) -> None:
        future = asyncio.get_running_loop().run_in_executor(None, _write_file, path, text)
        self._writes.add(future)
        future.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        """Write what is left (at shutdown) and wait for the writes under way."""
        if self.file is not None:
            due = self.file.close()
            if due is not None:
                await asyncio.to_thread(_write_file, *due)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


def _write_file(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # a trace file that cannot be written must not stop serving
        log.error("cannot write the trace file %s: %s", path, exc)
