"""What a batcher counts and reports: Triton's statistics for ModelStatistics, and the observer
the metrics implement. Nothing here decides anything; the batcher calls it as things happen."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol

log = logging.getLogger("cnnserve.batching")

P = ParamSpec("P")


class BatchObserver(Protocol):
    """What the batcher reports as it goes (``cnnserve.server.metrics.Metrics`` implements it).

    Called on the event loop; an observer that raises is logged and otherwise ignored.
    """

    def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None:
        """A batch of ``batch_size`` items ran successfully in ``compute_seconds``."""

    def on_dequeue(self, model: str, queue_seconds: float) -> None:
        """A request waited ``queue_seconds`` before its batch started computing."""

    def on_copy(self, model: str, copy_seconds: float) -> None:
        """A batch's inputs took ``copy_seconds`` to copy into the session's buffers (reported by
        runtimes that copy, before their compute, for the batches they copied)."""

    def on_drop(self, model: str, reason: str) -> None:
        """A request left without being computed: ``cancelled`` (its caller went away),
        ``deadline`` (it passed while queued), ``shutdown`` (closed without draining) or
        ``error`` (the batcher's loop failed)."""


class NoObserver:
    def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None:
        pass

    def on_dequeue(self, model: str, queue_seconds: float) -> None:
        pass

    def on_copy(self, model: str, copy_seconds: float) -> None:
        pass

    def on_drop(self, model: str, reason: str) -> None:
        pass


@dataclass
class BatcherStats:
    """Cumulative counts for ModelStatistics, with Triton's meanings; durations in nanoseconds.

    Every accepted request ends in exactly one of success, fail or cancel, so ``request_count``
    is their sum plus the requests still pending. As in Triton, ``queue`` and ``compute`` are
    counted for successful requests, each charged its whole batch's compute time;
    ``inference_count`` counts items and ``execution_count`` runs, both of successful runs only
    (a batch that failed and was re-run request by request counts the re-runs).
    """

    request_count: int = 0  # accepted by infer()
    success_count: int = 0
    success_ns: int = 0  # arrival to answer
    fail_count: int = 0
    fail_ns: int = 0
    cancel_count: int = 0  # the caller went away first
    queue_count: int = 0
    queue_ns: int = 0  # arrival to the start of its batch's run
    compute_count: int = 0
    compute_ns: int = 0
    inference_count: int = 0  # items computed
    execution_count: int = 0  # runs
    batch_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # items -> (runs, compute ns)


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


class Accounting:
    """One model's statistics and observer, updated together."""

    __slots__ = ("model", "observer", "stats")

    def __init__(self, model: str, observer: BatchObserver | None) -> None:
        self.model = model
        self.stats = BatcherStats()
        self.observer: BatchObserver = observer or NoObserver()

    def accepted(self) -> None:
        self.stats.request_count += 1

    def dequeued(self, queue_seconds: float) -> None:
        self._observe(self.observer.on_dequeue, self.model, queue_seconds)

    def dropped(self, reason: str) -> None:
        self._observe(self.observer.on_drop, self.model, reason)

    def copied(self, copy_seconds: float) -> None:
        self._observe(self.observer.on_copy, self.model, copy_seconds)

    def cancelled(self) -> None:
        self.stats.cancel_count += 1

    def succeeded(self, seconds: float, queue_seconds: float, compute_seconds: float) -> None:
        s = self.stats
        s.success_count += 1
        s.success_ns += _ns(seconds)
        s.queue_count += 1
        s.queue_ns += _ns(queue_seconds)
        s.compute_count += 1
        s.compute_ns += _ns(compute_seconds)

    def failed(self, seconds: float) -> None:
        self.stats.fail_count += 1
        self.stats.fail_ns += _ns(seconds)

    def executed(self, size: int, seconds: float) -> None:
        s = self.stats
        s.execution_count += 1
        s.inference_count += size
        runs, ns = s.batch_sizes.get(size, (0, 0))
        s.batch_sizes[size] = (runs + 1, ns + _ns(seconds))
        self._observe(self.observer.on_batch, self.model, size, seconds)

    def _observe(self, event: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
        # Metrics are not worth a request: a failing observer is logged, never propagated.
        try:
            event(*args, **kwargs)
        except Exception:
            log.exception("model %s: batch observer failed", self.model)
