"""The dynamic batcher of one model: concurrent requests joined into one ONNX Runtime run.

Requests queue in arrival order (:mod:`.queue`, bounded in requests and bytes: beyond either a
request is refused with RESOURCE_EXHAUSTED at once, naming the limit); the leave policy
(:mod:`.policy`) says when a batch leaves and how large it is; a lone request of a cheap model
may run at once on the event loop (:mod:`.inline`); what happens is counted and reported
(:mod:`.stats`). While ``concurrency`` batches run, requests keep queueing: that is where batches
come from under load.

Like MLServer's adaptive batcher, every queued request's future is resolved exactly once, with
its outputs or an exception, whatever happens: a request whose caller cancelled, or whose deadline
passed while it waited, leaves the queue without being computed; a failing batch is re-run request
by request so that only the bad request fails; if the batcher's own loop dies, everything queued
fails with INTERNAL (and the next request starts a fresh loop); ``close()`` drains or fails what
is queued.

The batcher computes nothing itself: ``run`` is handed each request's tensors in batch order and
awaited; the runtime joins them and computes in its own worker threads, so the event loop only
slices outputs. The requests' tensors were checked against the model before they got here (by the
data plane): the batcher trusts their names, shapes and the item count it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import numpy as np

from cnnserve.server import errors
from cnnserve.server.batching.inline import LONE_GAP_SECONDS, InlinePath, RunInline, RunOutputs
from cnnserve.server.batching.policy import LeavePolicy
from cnnserve.server.batching.queue import DEFAULT_QUEUE_BATCHES, QueuedRequest, RequestQueue, Tensors
from cnnserve.server.batching.stats import Accounting, BatcherStats, BatchObserver
from cnnserve.server.tracing import record
from cnnserve.server.tracing.record import Trace

log = logging.getLogger("cnnserve.batching")

# The runtime's run of a batch, given each request's tensors in batch order.
Run = Callable[[list[Mapping[str, np.ndarray]]], Awaitable[RunOutputs]]


class DynamicBatcher:
    """Joins one model's concurrent requests into batches for ``run`` (see the module's doc).

    It may be constructed outside an event loop; its loop starts on the first ``infer`` (or on
    ``start()``) and everything after that happens on that one event loop.
    """

    def __init__(
        self,
        name: str,
        run: Run,
        *,
        max_batch_size: int,
        max_queue_delay_us: int,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue_size: int | None = None,
        max_queue_bytes: int | None = None,
        concurrency: int = 1,
        observer: BatchObserver | None = None,
        run_inline: RunInline | None = None,
        alone: Callable[[], bool] | None = None,
        lone_gap: float = LONE_GAP_SECONDS,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us must be 0 or more, got {max_queue_delay_us}")
        if any(not 1 <= size <= max_batch_size for size in preferred_batch_sizes):
            raise ValueError(f"preferred_batch_sizes {list(preferred_batch_sizes)} must lie in 1..{max_batch_size}")
        if max_queue_size is None:
            max_queue_size = DEFAULT_QUEUE_BATCHES * max_batch_size
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")
        if max_queue_bytes is not None and max_queue_bytes < 1:
            raise ValueError(f"max_queue_bytes must be at least 1, got {max_queue_bytes}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.name = name
        self.max_batch_size = max_batch_size
        self.concurrency = concurrency
        self._run = run
        self._accounting = Accounting(name, observer)
        self._queue = RequestQueue(name, max_queue_size, max_queue_bytes)
        self._policy = LeavePolicy(max_batch_size, max_queue_delay_us / 1e6, preferred_batch_sizes)
        self._inline = None if run_inline is None else InlinePath(
            run_inline, policy=self._policy, accounting=self._accounting, record=self._record, error=self._error,
            alone=alone, lone_gap=lone_gap,
        )  # fmt: skip
        # Neither binds to an event loop before its first wait, so construction needs no loop.
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._accepting = True

    @property
    def stats(self) -> BatcherStats:
        return self._accounting.stats

    @property
    def preferred_batch_sizes(self) -> tuple[int, ...]:
        return self._policy.preferred_batch_sizes

    @property
    def max_queue_size(self) -> int:
        return self._queue.max_size

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the inputs of the requests waiting for a batch."""
        return self._queue.nbytes

    @property
    def accepting(self) -> bool:
        return self._accepting

    def start(self) -> None:
        """Start the dispatch loop in the running event loop; ``infer`` calls this itself, and
        restarts a loop that died (its requests were failed, the next ones deserve a try)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name=f"batcher:{self.name}")

    async def infer(
        self, inputs: Mapping[str, np.ndarray], *, items: int, deadline: float | None = None, trace: Trace | None = None
    ) -> Tensors:
        """Queue ``inputs`` (``items`` on the leading axis of each, checked by the caller) and
        return the outputs of exactly those items. ``deadline`` is in ``loop.time()`` units.

        Raises UNAVAILABLE once closing, RESOURCE_EXHAUSTED when the queue is full,
        DEADLINE_EXCEEDED when the deadline passes before the request's batch starts, and
        whatever its run raised (as INTERNAL unless it is a ServingError). Cancelling the caller
        drops a request not yet computed.
        """
        if not self._accepting:
            raise errors.Unavailable(f"model {self.name!r} is shutting down and takes no new requests")
        nbytes = sum(a.nbytes for a in inputs.values())
        self._queue.admit(nbytes)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is not None and deadline <= now:
            raise errors.DeadlineExceeded(f"model {self.name!r}: deadline passed before the request was queued")
        idle = self._policy.arrives(now, busy=bool(self._running or len(self._queue)))
        if idle and self._inline is not None and self._inline.applies(now):
            if trace is not None:
                trace.stamp(record.COMPUTE_START)
            outputs = self._inline.run(inputs, items, now)
            if outputs is not None:
                if trace is not None:
                    trace.stamp(record.COMPUTE_END)
                return outputs
        self.start()
        request = QueuedRequest(inputs, items, loop.create_future(), now, deadline, nbytes, idle, trace=trace)
        if trace is not None:
            trace.stamp(record.QUEUE_START)
        self._enqueue(request)
        return await request.future

    async def close(self, drain: bool = True) -> None:
        """Take no new requests (they get UNAVAILABLE); then compute everything queued
        (``drain``) or fail it with UNAVAILABLE, and wait for the running batches."""
        self._accepting = False
        if not drain:
            self._fail_queued(
                errors.Unavailable, f"model {self.name!r} is shutting down; the request was not run", reason="shutdown"
            )
        self._wake.set()
        # asyncio.wait, not gather: cancelling close() must not cancel the drain itself.
        if self._task is not None:
            await asyncio.wait([self._task])
        if self._running:
            await asyncio.wait(list(self._running))

    # -- the queue ------------------------------------------------------------------------------

    def _enqueue(self, request: QueuedRequest) -> None:
        self._queue.push(request)
        self._accounting.accepted()
        if request.deadline is not None:
            request.timer = request.future.get_loop().call_at(request.deadline, self._expire, request)
        request.future.add_done_callback(functools.partial(self._settle, request))
        self._wake.set()

    def _expire(self, request: QueuedRequest) -> None:
        """The deadline timer of a queued request: it is failed, and never computed."""
        if request.future.done() or not self._queue.remove(request):
            return
        waited = request.future.get_loop().time() - request.arrived
        request.future.set_exception(
            errors.DeadlineExceeded(f"model {self.name!r}: deadline passed after {waited:.3f}s in the queue")
        )
        self._accounting.dropped("deadline")
        self._wake.set()  # the oldest request may have been this one

    def _settle(self, request: QueuedRequest, future: asyncio.Future[Tensors]) -> None:
        """Done callback of every accepted request: the one place its outcome is counted.

        A future settles once, so counting here cannot count a request twice, whichever path
        (result, failure, deadline, cancellation by its caller, shutdown) resolved it.
        """
        # Every path that resolves a request takes it off the queue first, except a caller's
        # cancellation: a request still queued here was cancelled.
        if self._queue.remove(request):
            self._wake.set()
        now = future.get_loop().time()
        if future.cancelled():
            self._accounting.cancelled()
            if request.started is None:
                self._accounting.dropped("cancelled")
        elif future.exception() is not None:
            self._accounting.failed(now - request.arrived)
        else:
            assert request.started is not None
            self._accounting.succeeded(now - request.arrived, request.started - request.arrived,
                                       request.compute_seconds)  # fmt: skip

    def _fail_queued(self, error: type[errors.ServingError], message: str, *, reason: str) -> None:
        for request in list(self._queue):
            self._queue.remove(request)
            if not request.future.done():
                request.future.set_exception(error(message))
                self._accounting.dropped(reason)

    # -- the dispatch loop ----------------------------------------------------------------------

    async def _dispatch(self) -> None:
        try:
            while await self._dispatch_one():
                pass
        except asyncio.CancelledError:  # the event loop is going away
            self._fail_queued(
                errors.Unavailable,
                f"model {self.name!r}: batcher stopped before the request was run",
                reason="shutdown",
            )
            raise
        except Exception as exc:
            log.exception("batcher of model %s failed; failing its %d queued requests", self.name, len(self._queue))
            message = f"model {self.name!r}: batcher failed: {type(exc).__name__}: {exc}"
            self._fail_queued(errors.Internal, message, reason="error")

    async def _dispatch_one(self) -> bool:
        """Wait for a free instance and a batch worth sending, and launch it; False once closed
        and drained."""
        await self._slots.acquire()
        try:
            batch = await self._next_batch()
        except BaseException:
            self._slots.release()
            raise
        if batch is None:
            self._slots.release()
            return False
        task = asyncio.get_running_loop().create_task(self._execute(batch), name=f"batch:{self.name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return True

    async def _next_batch(self) -> list[QueuedRequest] | None:
        """Wait until the policy lets the oldest request's batch leave, and take it off the
        queue; None once closed and drained."""
        loop = asyncio.get_running_loop()
        while True:
            oldest = self._queue.oldest()
            if oldest is None:
                if not self._accepting:
                    return None
                await self._sleep(until=None)
                continue
            leave = self._policy.leave(oldest, self._queue.items, draining=not self._accepting, now=loop.time())
            if leave.now:
                return self._policy.take(self._queue, cut_to_preferred=leave.cut_to_preferred)
            await self._sleep(until=leave.until)

    async def _sleep(self, *, until: float | None) -> None:
        """Until something is queued or leaves the queue, or the loop time ``until``."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await self._wake.wait()

    # -- running a batch ------------------------------------------------------------------------

    async def _execute(self, batch: list[QueuedRequest]) -> None:
        """Run one batch in its instance slot; every request of it is resolved on return."""
        try:
            await self._compute_batch(batch)
        except Exception as exc:  # a bug of ours: nobody else would answer these requests
            log.exception("batcher of model %s failed while running a batch", self.name)
            self._fail_all(batch, errors.Internal, f"model {self.name!r}: batcher failed: {type(exc).__name__}: {exc}")
        except BaseException:
            self._fail_all(batch, errors.Unavailable, f"model {self.name!r}: batcher stopped while the request ran")
            raise
        finally:
            self._slots.release()

    async def _compute_batch(self, batch: list[QueuedRequest]) -> None:
        now = asyncio.get_running_loop().time()
        # A caller may have cancelled between the take and now: it is dropped, not computed.
        live = [r for r in batch if not r.future.done()]
        for request in live:
            request.started = now
            self._accounting.dequeued(now - request.arrived)
        if not live:
            return
        try:
            await self._compute(live)
        except Exception as exc:
            if len(live) == 1:
                self._fail(live[0], exc)
                return
            # One bad request must not fail its batch-mates: run each alone, so only it fails.
            log.warning("model %s: a batch of %d requests failed (%s: %s); running each alone", self.name, len(live),
                        type(exc).__name__, exc)  # fmt: skip
            for request in live:
                if request.future.done():
                    continue
                try:
                    await self._compute([request])
                except Exception as single:
                    self._fail(request, single)

    async def _compute(self, requests: list[QueuedRequest]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await self._run([r.inputs for r in requests])
        ended = loop.time()
        size = sum(r.items for r in requests)
        outputs, seconds = self._record(result, size, len(requests), ended - started)
        if any(r.trace is not None for r in requests):
            _stamp_batch(requests, size, started, ended, getattr(result, "copy_seconds", None) or 0.0, seconds,
                         getattr(result, "instance", 0))  # fmt: skip
        offset = 0
        for request in requests:
            request.compute_seconds = seconds
            if not request.future.done():
                request.future.set_result({name: v[offset : offset + request.items] for name, v in outputs.items()})
            offset += request.items

    def _record(
        self, result: RunOutputs, size: int, callers: int, elapsed: float
    ) -> tuple[Mapping[str, np.ndarray], float]:
        """Check and record a run of ``size`` items for ``callers`` requests; return its outputs
        and compute seconds (the runtime's own timing, else ``elapsed``)."""
        if isinstance(result, Mapping):
            outputs, seconds = result, elapsed
        else:  # the runtime timed the session call itself
            outputs, seconds = result.outputs, result.compute_seconds
        for name, value in outputs.items():
            shape = np.shape(value)
            if shape[:1] != (size,):
                raise errors.Internal(
                    f"model {self.name!r}: output {name!r} has shape {list(shape)}, expected {size} items first"
                )
        copied = getattr(result, "copy_seconds", None)
        if copied is not None:
            self._accounting.copied(copied)
        self._accounting.executed(size, seconds)
        self._policy.finished(callers, asyncio.get_running_loop().time())
        return outputs, seconds

    def _fail(self, request: QueuedRequest, exc: Exception) -> None:
        if not request.future.done():
            request.future.set_exception(self._error(exc))

    def _error(self, exc: Exception) -> errors.ServingError:
        """What a failed run becomes for its caller: a ServingError as it is, anything else
        INTERNAL (and logged: it is a model's or the runtime's fault)."""
        if isinstance(exc, errors.ServingError):
            return exc
        log.error("model %s: inference failed", self.name, exc_info=exc)
        error = errors.Internal(f"model {self.name!r}: inference failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    def _fail_all(self, requests: list[QueuedRequest], error: type[errors.ServingError], message: str) -> None:
        for request in requests:
            if not request.future.done():
                # One instance per request: an exception's traceback is written as it is raised.
                request.future.set_exception(error(message))


_batch_ids = itertools.count(1)


def _stamp_batch(requests: list[QueuedRequest], size: int, started: float, ended: float, copy: float,
                 compute: float, instance: int) -> None:  # fmt: skip
    """One Batch record for the traced requests of a run, stamped from the loop's clock (the
    monotonic one) and the runtime's own copy and compute times; each traced request gets it and
    its first item's position."""
    batch = record.Batch(next(_batch_ids), size, len(requests), instance)
    start_ns = int(started * 1e9)
    batch.stamp(record.COMPUTE_START, start_ns)
    batch.stamp(record.COMPUTE_INPUT_END, start_ns + int(copy * 1e9))
    batch.stamp(record.COMPUTE_OUTPUT_START, start_ns + int((copy + compute) * 1e9))
    batch.stamp(record.COMPUTE_END, int(ended * 1e9))
    position = 0
    for request in requests:
        if request.trace is not None:
            request.trace.runs.append((batch, position))
        position += request.items
