"""What a supervisor and its workers tell each other, in one place that both import (neither
imports the other).

- Settings: the supervisor passes each worker its settings as JSON in ``CNNSERVE_WORKER_SETTINGS``
  and its number in ``CNNSERVE_WORKER``.
- Readiness: a worker prints ``cnnserve ready:`` on its stdout once its models are; the supervisor
  writes ``peers ready`` or ``peers not ready`` on the worker's stdin, and closes it when it goes.
- Log settings: a worker whose log settings a client changed prints ``cnnserve log settings:`` and
  them as JSON; the supervisor takes them and writes ``log settings`` and the same JSON on every
  other worker's stdin, and on each new worker's when it starts, so that the whole server logs alike.
  Trace settings travel the same way (``cnnserve trace settings:``, ``trace settings``), as the
  whole table of the server's and each model's, so that a worker started later traces alike.
- Heartbeat: a file per worker (``CNNSERVE_WORKER_HEARTBEAT``) whose modification time the
  worker's event loop touches every :func:`beat_interval` seconds, as gunicorn's workers touch
  theirs; a worker silent for longer than ``--worker-timeout`` is killed and replaced.
- Exit status :data:`BOOT_FAILED`: the worker could not start (repository, runtime, TLS, port);
  it wrote why into its heartbeat file first, so the supervisor can say it in its own log.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cnnserve.server.settings import Settings

SETTINGS_VARIABLE = "CNNSERVE_WORKER_SETTINGS"
NUMBER_VARIABLE = "CNNSERVE_WORKER"
HEARTBEAT_VARIABLE = "CNNSERVE_WORKER_HEARTBEAT"
PEERS_READY = "peers ready"
PEERS_NOT_READY = "peers not ready"
LOG_SETTINGS_CHANGED = "cnnserve log settings:"  # a worker's stdout, then the settings as JSON
SET_LOG_SETTINGS = "log settings"  # a worker's stdin, then the settings as JSON
TRACE_SETTINGS_CHANGED = "cnnserve trace settings:"
SET_TRACE_SETTINGS = "trace settings"
BOOT_FAILED = 3
"""A worker's exit status when it could not start (gunicorn's ``WORKER_BOOT_ERROR``)."""


def settings_json(settings: Settings) -> str:
    return json.dumps(asdict(settings))


def settings_from_json(text: str) -> Settings:
    values: dict[str, Any] = json.loads(text)
    for name, value in values.items():  # JSON has lists where settings hold tuples
        if isinstance(value, list):
            values[name] = tuple(value)
    return Settings(**values)


def beat_interval(timeout: float) -> float:
    """How often a worker beats: every second, or four times within a shorter timeout, so that a
    late beat is never taken for silence."""
    return min(1.0, timeout / 4) if timeout > 0 else 1.0


class Heartbeat:
    """One worker's heartbeat file: its modification time is the last beat, its text the reason
    the worker could not start (empty otherwise)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def beat(self) -> None:
        os.utime(self.path)  # one system call: cheap enough for the event loop

    def silence(self) -> float:
        """Seconds since the last beat (since the file was made, before the first)."""
        return time.time() - self.path.stat().st_mtime

    def fail(self, reason: str) -> None:
        self.path.write_text(reason, encoding="utf-8")

    def failure(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""
