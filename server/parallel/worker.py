"""One worker of a multi-worker server: ``python -m cnnserve.server.parallel.worker``, started by the
supervisor (:mod:`cnnserve.server.parallel.supervisor`), never by hand.

A worker is a complete server (its own event loop, batchers and ONNX Runtime sessions) that
shares the gRPC port with the others (``SO_REUSEPORT``). It gets its settings as JSON in
``CNNSERVE_WORKER_SETTINGS`` and its number in ``CNNSERVE_WORKER``; its metrics go to files
under ``PROMETHEUS_MULTIPROC_DIR``, which the supervisor serves summed. Its standard input is
the supervisor's line to it: ``peers ready`` and ``peers not ready`` say whether every worker is
ready (health and readiness speak for the whole server), and end of file means the supervisor
has gone, so the worker stops as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import asdict
from typing import Any

from cnnserve.server.app import Server, run
from cnnserve.server.settings import LISTS, Settings

log = logging.getLogger("cnnserve.worker")

SETTINGS_VARIABLE = "CNNSERVE_WORKER_SETTINGS"
NUMBER_VARIABLE = "CNNSERVE_WORKER"
PEERS_READY = "peers ready"
PEERS_NOT_READY = "peers not ready"


def settings_json(settings: Settings) -> str:
    return json.dumps(asdict(settings))


def settings_from_json(text: str) -> Settings:
    values: dict[str, Any] = json.loads(text)
    for name in LISTS:  # JSON has lists
        values[name] = tuple(values[name])
    return Settings(**values)


async def follow_supervisor(server: Server) -> None:
    """Read the supervisor's lines on stdin until it closes it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        said = line.decode().strip()
        if said in (PEERS_READY, PEERS_NOT_READY):
            await server.set_peers_ready(said == PEERS_READY)
        else:
            log.warning("unexpected line from the supervisor: %r", said)
    log.warning("the supervisor has gone; stopping")
    server.request_stop()


def main() -> int:
    settings = settings_from_json(os.environ[SETTINGS_VARIABLE])
    return run(settings, worker=int(os.environ[NUMBER_VARIABLE]), companion=follow_supervisor)


if __name__ == "__main__":
    sys.exit(main())
