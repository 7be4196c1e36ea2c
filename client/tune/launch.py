"""A ``cnnserve serve`` for one point of the space: a subprocess on free ports, serving one model
of the repository with the point's flags, stopped (SIGTERM, then SIGKILL) however the block ends.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cnnserve.client.channel import ClientError

_LISTENING = re.compile(r"cnnserve listening: grpc=(?P<grpc>\S+) metrics=(?P<metrics>\S+)")


class StartFailed(Exception):
    """The server did not become ready: it exited, or did not say ready in time. The message
    ends with the last lines it printed."""


@dataclass
class Started:
    process: subprocess.Popen[str]
    grpc: str = ""
    metrics: str = ""
    seconds: float = 0.0  # from the start to ready
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=30))

    @property
    def pid(self) -> int:
        return self.process.pid


def command(repo: str, model: str, device: str, flags: list[str]) -> list[str]:
    return [sys.executable, "-m", "cnnserve", "serve", "--repo", repo, "--model", model, "--device", device,
            "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--http-port", "-1",
            # Nothing to drain between two points: stop at once.
            "--drain-seconds", "0", "--grace-seconds", "5", *flags]  # fmt: skip


@contextmanager
def serving(repo: str, model: str, device: str, flags: list[str], timeout: float = 300) -> Iterator[Started]:
    """A server for ``model`` with ``flags``, ready; stopped when the block ends, on an exception
    or Ctrl-C too."""
    started = time.perf_counter()
    try:
        process = subprocess.Popen(command(repo, model, device, flags), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    except OSError as exc:
        raise ClientError(f"cannot start the server: {exc}") from None
    server = Started(process)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.tail.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match:
                server.grpc, server.metrics = match["grpc"], match["metrics"]
            elif line.startswith("cnnserve ready:"):
                ready.set()
        ready.set()  # it exited

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout) or process.poll() is not None or not server.grpc:
            code = process.poll()
            why = f"exited with status {code}" if code is not None else f"not ready in {timeout:g} s"
            raise StartFailed(f"{why}: " + " | ".join(list(server.tail)[-6:]))
        server.seconds = time.perf_counter() - started
        yield server
    finally:
        stop(process)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def stop(process: subprocess.Popen[str], timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout``; waits either way, even through
    a second Ctrl-C, so that no server outlives the command."""
    while True:
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return
        except KeyboardInterrupt:
            continue
