"""The inline path: a lone request run at once on the event loop's own thread, accounted as a
batch of one that waited 0 s.

It applies to a request that finds its model idle, is the only one in flight for it (``alone``:
others still being decoded should share its run) and arrives at least ``lone_gap`` after the
model's last run finished (sooner, the next request was already waiting: a crowd, which batches).
The model manager offers it to models whose lone request computes faster than
``--inline-compute-us``: for them the hop to a worker thread and back costs as much as the run,
and nothing else could have joined the request anyway. If the runtime declines (no instance
free), the request queues. An inline request has no future and no task: it is answered, or
fails, in the caller's own ``infer``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from cnnserve.server import errors
from cnnserve.server.batching.policy import LeavePolicy
from cnnserve.server.batching.stats import Accounting

# A request arriving sooner than this after the model's last run finished is taken for part of a
# crowd (under load the next request is already waiting in gRPC when a reply leaves), never for a
# lone caller, who needs longer to get its reply over gRPC and send again.
LONE_GAP_SECONDS = 600e-6


class TimedOutputs(Protocol):
    """What a runtime returns: the outputs with the compute time it measured around the session
    call itself, without the hop to its worker thread."""

    @property
    def outputs(self) -> Mapping[str, np.ndarray]: ...

    @property
    def compute_seconds(self) -> float: ...


RunOutputs = Mapping[str, np.ndarray] | TimedOutputs
# The runtime's synchronous run on the event loop's thread; None when no instance is free to do it.
RunInline = Callable[[Sequence[Mapping[str, np.ndarray]]], RunOutputs | None]
# How the batcher checks and records a finished run: (outputs, compute seconds).
Record = Callable[[RunOutputs, int, int, float], tuple[Mapping[str, np.ndarray], float]]


class InlinePath:
    def __init__(
        self,
        run: RunInline,
        *,
        policy: LeavePolicy,
        accounting: Accounting,
        record: Record,
        error: Callable[[Exception], errors.ServingError],
        alone: Callable[[], bool] | None,
        lone_gap: float = LONE_GAP_SECONDS,
    ) -> None:
        self._run = run
        self._policy = policy
        self._accounting = accounting
        self._record = record
        self._error = error
        self._alone = alone  # whether the request at hand is its model's only one in flight (None: assume so)
        self._lone_gap = lone_gap

    def applies(self, now: float) -> bool:
        """For a request that found its model idle at loop time ``now``: whether it is lone."""
        return now - self._policy.last_finished >= self._lone_gap and (self._alone is None or self._alone())

    def run(self, inputs: Mapping[str, np.ndarray], items: int, arrived: float) -> dict[str, np.ndarray] | None:
        """The outputs (or the failure raised) of ``inputs`` run here and now; None, with nothing
        done or counted, when the runtime has no instance free for it."""
        started = time.perf_counter()
        result: RunOutputs | Exception | None
        try:
            result = self._run([inputs])
        except Exception as exc:
            result = exc
        if result is None:
            return None
        self._accounting.accepted()
        self._accounting.dequeued(0.0)
        loop = asyncio.get_running_loop()
        try:
            if isinstance(result, Exception):
                raise result
            outputs, seconds = self._record(result, items, 1, time.perf_counter() - started)
        except Exception as exc:
            self._accounting.failed(loop.time() - arrived)
            raise self._error(exc)  # noqa: B904 (the error chains its cause itself)
        self._accounting.succeeded(loop.time() - arrived, 0.0, seconds)
        return dict(outputs)
