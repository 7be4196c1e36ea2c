"""Accepted calls that still have work to do before they reach a batcher.

Classify decodes images and Policy computes feature planes before queuing; a call accepted before
SIGTERM must still be answered, so shutdown waits until every such call has queued its work
(``drain``) before the batchers close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from cnnserve.server import errors
from cnnserve.server.dataplane import DataPlane

T = TypeVar("T")


class Admission:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self._admitting = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Accept a call (UNAVAILABLE while draining) and count it until its work is queued."""
        if self.plane.draining:
            raise errors.Unavailable("server is shutting down and takes no new requests")
        self._admitting += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._admitting -= 1
            if not self._admitting:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until every accepted call has queued its work in the batchers (called on shutdown,
        after ``plane.draining`` is set and before the batchers close)."""
        while self._admitting:
            await self._idle.wait()


async def queued(calls: list[Coroutine[Any, Any, T]]) -> list[asyncio.Task[T]]:
    """Start ``calls`` (``DataPlane.infer`` coroutines) as tasks and let each take its first step,
    which queues it in its batcher; once this returns, draining waits for them. If this call is
    cancelled first, so are they."""
    tasks = [asyncio.create_task(call) for call in calls]
    try:
        await asyncio.sleep(0)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return tasks
