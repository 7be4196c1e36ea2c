"""When a batch leaves the queue, and how large it is (Triton's dynamic batcher, simplified).

* A batch leaves once a model instance is free and either the queued items reach the largest
  preferred batch size (``max_batch_size`` without preferred sizes), or the oldest request has
  waited ``max_queue_delay_us``, or the batcher is draining, or the oldest request found the model
  idle (nothing running, nothing queued, nobody expected back) when it arrived: a lone caller then
  pays no delay, while requests arriving under load still wait for batch-mates. A batch that
  leaves on size is cut at the largest preferred size a prefix of the queue adds up to (the sizes
  the runtime was warmed up at); one that leaves on time takes what fits in ``max_batch_size``.
  A request is never split, and never overtaken.
* The callers of a batch that just finished are expected back (a closed loop sends its next
  request when its reply comes), for at most ``max_queue_delay_us`` after it finished: while any
  are still expected, an arrival does not count as finding the model idle, and overdue requests
  wait for them rather than leave in a smaller batch. Without this, 32 closed-loop callers of a
  model whose maximum is 32 split into a group of 1 and one of 31 that never merge: the first
  caller back after a batch finds the model idle and goes alone, and the rest, overdue by the
  time it finishes, go without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from cnnserve.server.batching.queue import QueuedRequest, RequestQueue


class Leave(NamedTuple):
    """The policy's answer for the oldest request: leave now (cut to a preferred size or not), or
    wait until the loop time ``until`` (None: until something changes)."""

    now: bool
    cut_to_preferred: bool = False
    until: float | None = None


class LeavePolicy:
    def __init__(self, max_batch_size: int, max_queue_delay: float, preferred_batch_sizes: Sequence[int]) -> None:
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.preferred_batch_sizes = tuple(sorted(set(preferred_batch_sizes)))
        # A batch leaving on size alone waits for this many items.
        self.target = max(self.preferred_batch_sizes, default=max_batch_size)
        self.last_finished = -math.inf  # loop time the last run's outputs were handed out
        # Callers of the last finished batch not yet back, and until when they are waited for.
        self._awaited = 0
        self._awaited_until = 0.0

    def arrives(self, now: float, *, busy: bool) -> bool:
        """Note an arrival at loop time ``now``; True when it finds the model idle: nothing
        running or queued (``busy``), none of the last batch's callers still expected."""
        if self._awaited:
            self._awaited -= 1  # one of the last batch's callers, most likely: one fewer to wait for
        expecting = self._awaited > 0 and now < self._awaited_until
        return not busy and not expecting

    def finished(self, callers: int, now: float) -> None:
        """A run for ``callers`` requests handed out its outputs at loop time ``now``."""
        self._awaited = callers
        self.last_finished = now
        self._awaited_until = now + self.max_queue_delay

    def leave(self, oldest: QueuedRequest, queued_items: int, *, draining: bool, now: float) -> Leave:
        # Enough items queued means the FIFO prefix either reaches the target or cannot grow (its
        # next request would overflow max_batch_size): either way, waiting gains nothing.
        # A request that finds the model idle goes at once: nothing suggests company is coming
        # (one caller waiting for its reply sends nothing more), and asyncio's timers are too
        # coarse to wait a little. One that arrived while a batch ran waits for batch-mates.
        if draining or oldest.found_idle:
            return Leave(now=True)
        if queued_items >= self.target:
            return Leave(now=True, cut_to_preferred=True)
        due = oldest.arrived + self.max_queue_delay
        if now < due:
            return Leave(now=False, until=due)
        if self._awaited and now < self._awaited_until:
            return Leave(now=False, until=self._awaited_until)  # the last batch's callers may come back
        return Leave(now=True)

    def take(self, queue: RequestQueue, *, cut_to_preferred: bool) -> list[QueuedRequest]:
        """Take the FIFO run of requests that fits in ``max_batch_size`` off ``queue``; when
        ``cut_to_preferred``, only its longest prefix that adds up to a preferred size."""
        batch: list[QueuedRequest] = []
        total = 0
        preferred_end = 0
        for request in queue:
            if request.future.done():
                continue
            if total + request.items > self.max_batch_size:
                break  # requests are not split, and one does not overtake another
            batch.append(request)
            total += request.items
            if total in self.preferred_batch_sizes:
                preferred_end = len(batch)
        if cut_to_preferred and preferred_end:
            del batch[preferred_end:]
        for request in batch:
            queue.remove(request)
        return batch
