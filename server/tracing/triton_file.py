"""Triton's JSON trace file: a list of entries, per trace one naming its model and version and
one with its timestamps. With ``log_frequency`` N, every N traces go to ``FILE.0``, ``FILE.1``,
...; with 0 they are written to ``FILE`` when the server stops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnserve.server.tracing.record import Trace


def entries(trace: Trace) -> list[dict[str, Any]]:
    head: dict[str, Any] = {"id": trace.id, "model_name": trace.model, "model_version": int(trace.version or 0)}
    if trace.request_id:
        head["request_id"] = trace.request_id
    # cnnserve's additions: the runs it rode in and its place in each, how it came, how it ended.
    runs = [{"id": b.id, "size": b.size, "requests": b.requests, "position": p, "instance": b.instance}
            for b, p in trace.runs]  # fmt: skip
    if runs:
        head["batch"] = runs[0]
    if len(runs) > 1:  # a Classify call of more images than the model's max_batch_size
        head["batches"] = runs
    head["protocol"] = trace.protocol
    if trace.api:
        head["rpc"] = trace.api
    if trace.parent is not None:
        head["trace_id"] = trace.parent.trace_hex
    if trace.error:
        head["error"] = trace.error
    stamps = [{"name": name, "ns": ns} for name, ns in trace.timestamps()]
    return [head, {"id": trace.id, "timestamps": stamps}]


class TritonFile:
    def __init__(self, path: str, log_frequency: int = 0) -> None:
        self.path = path
        self.log_frequency = log_frequency
        self.pending: list[dict[str, Any]] = []
        self.traces = 0
        self.index = 0

    def add(self, trace: Trace) -> tuple[Path, str] | None:
        """Keep ``trace``; (file, text) to write when a file is due (the caller writes it off the
        event loop), else None."""
        self.pending += entries(trace)
        self.traces += 1
        if self.log_frequency and self.traces % self.log_frequency == 0:
            return self._take(Path(f"{self.path}.{self.index}"), advance=True)
        return None

    def close(self) -> tuple[Path, str] | None:
        """What is left, at shutdown: to ``FILE`` (or the next ``FILE.N``); None when nothing is."""
        if not self.pending:
            return None
        target = Path(f"{self.path}.{self.index}") if self.log_frequency else Path(self.path)
        return self._take(target, advance=bool(self.log_frequency))

    def _take(self, path: Path, *, advance: bool) -> tuple[Path, str]:
        text = json.dumps(self.pending, separators=(",", ":"))
        self.pending = []
        if advance:
            self.index += 1
        return path, text
