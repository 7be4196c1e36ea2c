"""One worker of a multi-worker server: ``python -m cnnserve.server.parallel.worker``, started by
the supervisor (:mod:`cnnserve.server.parallel.supervisor`), never by hand.

A worker is a complete server (its own event loop, batchers and ONNX Runtime sessions) that
shares the gRPC port with the others (``SO_REUSEPORT``); what it and the supervisor tell each
other is in :mod:`cnnserve.server.parallel.protocol`. Its metrics go to files under
``PROMETHEUS_MULTIPROC_DIR``, which the supervisor serves summed. End of file on its standard
input means the supervisor has gone, so the worker stops as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from cnnserve.server import logs
from cnnserve.server.app import Server, run
from cnnserve.server.parallel.protocol import (
    BOOT_FAILED,
    HEARTBEAT_VARIABLE,
    LOG_SETTINGS_CHANGED,
    NUMBER_VARIABLE,
    PEERS_NOT_READY,
    PEERS_READY,
    SET_LOG_SETTINGS,
    SET_TRACE_SETTINGS,
    SETTINGS_VARIABLE,
    TRACE_SETTINGS_CHANGED,
    Heartbeat,
    beat_interval,
    settings_from_json,
)

log = logging.getLogger("cnnserve.worker")


class SupervisorLink:
    """What runs beside the server in a worker: the heartbeat, and the supervisor's lines."""

    def __init__(self, heartbeat: Heartbeat, timeout: float) -> None:
        self.heartbeat = heartbeat
        self.interval = beat_interval(timeout)
        self.server: Server | None = None

    async def __call__(self, server: Server) -> None:
        self.server = server
        # A client's change here goes to the supervisor, which passes it to the other workers.
        server.plane.tracer.listen(lambda state: print(f"{TRACE_SETTINGS_CHANGED} {json.dumps(state)}", flush=True))
        beating = asyncio.get_running_loop().create_task(self._beat(), name="heartbeat")
        try:
            await self._follow(server)
        finally:
            beating.cancel()

    async def _beat(self) -> None:
        while True:
            self.heartbeat.beat()
            await asyncio.sleep(self.interval)

    async def _follow(self, server: Server) -> None:
        """Read the supervisor's lines on stdin until it closes it."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            said = line.decode().strip()
            if said in (PEERS_READY, PEERS_NOT_READY):
                await server.set_peers_ready(said == PEERS_READY)
            elif said.startswith(SET_LOG_SETTINGS + " "):
                try:
                    logs.apply(logs.LogSettings(**json.loads(said.removeprefix(SET_LOG_SETTINGS))))
                except (ValueError, TypeError) as exc:
                    log.warning("log settings from the supervisor that are not: %r (%s)", said, exc)
            elif said.startswith(SET_TRACE_SETTINGS + " "):
                try:
                    server.plane.tracer.restore(json.loads(said.removeprefix(SET_TRACE_SETTINGS)))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    log.warning("trace settings from the supervisor that are not: %r (%s)", said, exc)
            else:
                log.warning("unexpected line from the supervisor: %r", said)
        log.warning("the supervisor has gone; stopping")
        server.request_stop()


def main() -> int:
    settings = settings_from_json(os.environ[SETTINGS_VARIABLE])
    link = SupervisorLink(Heartbeat(os.environ[HEARTBEAT_VARIABLE]), settings.worker_timeout)
    # A change a client makes here goes to the supervisor, which passes it to the other workers.
    logs.listen(lambda s: print(f"{LOG_SETTINGS_CHANGED} {json.dumps(s.to_json())}", flush=True))
    status = run(settings, worker=int(os.environ[NUMBER_VARIABLE]), companion=link)
    if status != 0 and link.server is not None and link.server.failure:
        link.heartbeat.fail(link.server.failure)
        return BOOT_FAILED
    return status


if __name__ == "__main__":
    sys.exit(main())
