"""A model's queue of requests waiting for a batch: arrival order, its limits, and the requests
themselves. Every request of a model has the same item shape (the data plane checked it against
config.json), so any run of them can share a batch: the queue counts items, not kinds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from cnnserve.server import errors
from cnnserve.server.tracing.record import Trace

Tensors = dict[str, np.ndarray]

DEFAULT_QUEUE_BATCHES = 8
"""Without ``max_queue_size``, a model queues this many times ``max_batch_size`` requests."""


@dataclass(eq=False, slots=True)
class QueuedRequest:
    inputs: Mapping[str, np.ndarray]
    items: int
    future: asyncio.Future[Tensors]
    arrived: float  # loop.time()
    deadline: float | None
    nbytes: int  # its inputs' bytes, counted against max_queue_bytes while it waits
    found_idle: bool  # nothing ran or waited for this model when it arrived
    timer: asyncio.TimerHandle | None = None  # fires at the deadline while queued
    started: float | None = None  # when its batch began computing
    compute_seconds: float = 0.0
    trace: Trace | None = None  # sampled for tracing: its stamps and the batch it rode in


class RequestQueue:
    """FIFO with O(1) removal (an insertion-ordered dict), bounded in requests and in bytes."""

    def __init__(self, model: str, max_size: int, max_bytes: int | None) -> None:
        self.model = model
        self.max_size = max_size
        self.max_bytes = max_bytes
        self._requests: dict[QueuedRequest, None] = {}
        self.items = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._requests)

    def __iter__(self) -> Iterator[QueuedRequest]:
        return iter(self._requests)

    def __contains__(self, request: QueuedRequest) -> bool:
        return request in self._requests

    def admit(self, nbytes: int) -> None:
        """Refuse, with RESOURCE_EXHAUSTED naming the limit, a request the queue cannot hold."""
        if len(self._requests) >= self.max_size:
            raise errors.ResourceExhausted(
                f"model {self.model!r}: queue full ({len(self._requests)} requests waiting, "
                f"max_queue_size {self.max_size}); retry later"
            )
        if self.max_bytes is not None and self.nbytes + nbytes > self.max_bytes:
            raise errors.ResourceExhausted(
                f"model {self.model!r}: queue full ({self.nbytes:,} bytes waiting, this request "
                f"{nbytes:,} bytes, max_queue_bytes {self.max_bytes:,}); retry later"
            )

    def push(self, request: QueuedRequest) -> None:
        self._requests[request] = None
        self.items += request.items
        self.nbytes += request.nbytes

    def remove(self, request: QueuedRequest) -> bool:
        """Take ``request`` off the queue (its deadline timer too); False if it was not there."""
        if request not in self._requests:
            return False
        del self._requests[request]
        self.items -= request.items
        self.nbytes -= request.nbytes
        if request.timer is not None:
            request.timer.cancel()
        return True

    def oldest(self) -> QueuedRequest | None:
        # Requests whose caller just cancelled stay until their done callback runs: skip them.
        return next((r for r in self._requests if not r.future.done()), None)
