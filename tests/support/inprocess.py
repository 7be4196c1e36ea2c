"""A real server in the test's own process: the same ``Server`` that ``cnnserve serve`` runs (gRPC
and HTTP front ends, data plane, batchers, ONNX Runtime sessions), on an event loop of its own in
a thread, so that stock blocking clients can call it. For tests that need only RPCs: those of
signals, exit statuses, workers and start-up run ``cnnserve serve`` as a subprocess
(:mod:`harness`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cnnserve.server.app import Server
from cnnserve.server.settings import Settings

T = TypeVar("T")


@dataclass
class InProcessServer:
    server: Server
    loop: asyncio.AbstractEventLoop

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.server.http_port}"

    @property
    def metrics_address(self) -> str:
        assert self.server.metrics_server is not None
        return f"127.0.0.1:{self.server.metrics_server.port}"

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coroutine`` on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@contextlib.contextmanager
def in_process(repo: Path, **settings: Any) -> Iterator[InProcessServer]:
    """A started server over ``repo`` on free loopback ports; ``settings``: any of ``Settings``."""
    values = {"repo": str(repo), "host": "127.0.0.1", "grpc_port": 0, "http_port": 0, "metrics_port": 0} | settings
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="in-process server", daemon=True)
    thread.start()

    async def build() -> Server:  # made on its own loop, as ``cnnserve serve`` makes it
        return Server(Settings(**values))

    served = InProcessServer(asyncio.run_coroutine_threadsafe(build(), loop).result(60), loop)
    try:
        served.call(served.server.start())
        yield served
    finally:
        served.call(served.server.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
