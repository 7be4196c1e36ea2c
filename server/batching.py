"""Dynamic batching: concurrent requests for one model joined into one ONNX Runtime run.

Policy (Triton's dynamic batcher, simplified):

* Requests queue in arrival order. Only requests with the same item signature (input names,
  dtypes and shapes without the batch axis) share a batch, and a request is never split.
* A batch of the oldest request's signature leaves once a model instance is free and either its
  queued items reach the largest preferred batch size (``max_batch_size`` without preferred sizes),
  or the oldest request has waited ``max_queue_delay_us``, or the batcher is draining, or the
  oldest request found the model idle (nothing running, nothing queued, nobody expected back)
  when it arrived: a lone caller then pays no delay, while requests arriving under load still
  wait for batch-mates. A batch that leaves on size is cut at the largest preferred size a prefix
  of the queue adds up to (the sizes the runtime was warmed up at); one that leaves on time takes
  what fits in ``max_batch_size``.
* The callers of a batch that just finished are expected back (a closed loop sends its next
  request when its reply comes), for at most ``max_queue_delay_us`` after it finished: while any
  are still expected, an arrival does not count as finding the model idle, and overdue requests
  wait for them rather than leave in a smaller batch. Without this, 32 closed-loop callers of a
  model whose maximum is 32 split into a group of 1 and one of 31 that never merge: the first
  caller back after a batch finds the model idle and goes alone, and the rest, overdue by the
  time it finishes, go without it.
* With ``run_inline``, a lone request is run at once on the event loop's thread, accounted as a
  batch of one: one that finds the model idle, is the only one in flight for it (``alone``:
  others still being decoded should share its run) and arrives at least ``lone_gap`` after the
  model's last run finished (sooner, the next request was already waiting: a crowd, which
  batches). The model manager gives ``run_inline`` to models whose lone request computes faster
  than ``--inline-compute-us``. If the runtime declines (more than one item, or no instance
  free), it queues. An inline request has no future and no task: it is answered, or fails, in
  the caller's own ``infer``.
* While ``concurrency`` batches run, requests keep queueing: that is where batches come from under
  load. The queue holds at most ``max_queue_size`` requests (default: eight times
  ``max_batch_size``) and at most ``max_queue_bytes`` bytes of inputs (unbounded by default);
  beyond either a request is refused with RESOURCE_EXHAUSTED at once, naming the limit.

Like MLServer's adaptive batcher, every queued request's future is resolved exactly once, with
its outputs or an exception, whatever happens: a request whose caller cancelled, or whose deadline
passed while it waited, leaves the queue without being computed; a failing batch is re-run request
by request so that only the bad request fails; if the batcher's own loop dies, everything queued
fails with INTERNAL (and the next request starts a fresh loop); ``close()`` drains or fails what
is queued.

The batcher computes nothing itself: ``run`` is awaited, and the runtime behind it owns the worker
threads. Given ``run_parts``, the batcher hands over each request's tensors and the runtime joins
them in its worker thread; the event loop then only slices outputs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol

import numpy as np

from cnnserve.server import errors

log = logging.getLogger("cnnserve.batching")

# A request arriving sooner than this after the model's last run finished is taken for part of a
# crowd (under load the next request is already waiting in gRPC when a reply leaves), never for a
# lone caller, who needs longer to get its reply over gRPC and send again (~0.9 ms measured on two
# cores; requests served one after another inline arrive ~0.35 ms apart).
LONE_GAP_SECONDS = 600e-6
DEFAULT_QUEUE_BATCHES = 8
"""Without ``max_queue_size``, a model queues this many times ``max_batch_size`` requests."""

Tensors = dict[str, np.ndarray]
Signature = tuple[tuple[str, str, tuple[int, ...]], ...]
P = ParamSpec("P")


class TimedOutputs(Protocol):
    """What ``run`` may return instead of bare outputs: the outputs with the compute time the
    runtime measured around the session call itself, without the hop to its worker thread."""

    @property
    def outputs(self) -> Mapping[str, np.ndarray]: ...

    @property
    def compute_seconds(self) -> float: ...


RunBatch = Callable[[Tensors], Awaitable[Mapping[str, np.ndarray] | TimedOutputs]]
# The same, given each request's tensors in batch order: the runtime joins them off the event loop.
RunParts = Callable[[list[Tensors]], Awaitable[Mapping[str, np.ndarray] | TimedOutputs]]
# The same, synchronously on the event loop's thread; None when no instance is free to do it.
RunInline = Callable[[Sequence[Mapping[str, np.ndarray]]], Mapping[str, np.ndarray] | TimedOutputs | None]


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


class _NoObserver:
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


@dataclass(eq=False, slots=True)
class _Request:
    inputs: Tensors
    items: int
    signature: Signature
    future: asyncio.Future[Tensors]
    arrived: float  # loop.time()
    deadline: float | None
    timer: asyncio.TimerHandle | None = None  # fires at the deadline while queued
    started: float | None = None  # when its batch began computing
    compute_seconds: float = 0.0
    found_idle: bool = False  # nothing ran or waited for this model when it arrived
    nbytes: int = 0  # its inputs' bytes, counted against max_queue_bytes while it waits


def signature_of(inputs: Mapping[str, np.ndarray]) -> Signature:
    """What must match for two requests to share a batch: names, dtypes, item shapes."""
    return tuple(sorted((name, a.dtype.str, tuple(a.shape[1:])) for name, a in inputs.items()))


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


class DynamicBatcher:
    """Joins one model's concurrent requests into batches for ``run`` (see the module's doc).

    It may be constructed outside an event loop; its loop starts on the first ``infer`` (or on
    ``start()``) and everything after that happens on that one event loop.
    """

    def __init__(
        self,
        name: str,
        run: RunBatch,
        *,
        max_batch_size: int,
        max_queue_delay_us: int,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue_size: int | None = None,
        max_queue_bytes: int | None = None,
        concurrency: int = 1,
        observer: BatchObserver | None = None,
        run_parts: RunParts | None = None,
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
        self.max_queue_delay = max_queue_delay_us / 1e6
        self.preferred_batch_sizes = tuple(sorted(set(preferred_batch_sizes)))
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.concurrency = concurrency
        self.stats = BatcherStats()
        self._run = run
        self._run_parts = run_parts
        self._run_inline = run_inline
        # Whether the request at hand is the only one in flight for this model (None: assume so).
        self._alone = alone
        self._lone_gap = lone_gap
        self._last_finished = -math.inf  # loop time the last run's outputs were handed out
        self._observer: BatchObserver = observer or _NoObserver()
        # A batch leaving on size alone waits for this many items of its signature.
        self._target = max(self.preferred_batch_sizes, default=max_batch_size)
        # Insertion-ordered set: FIFO, and O(1) removal when a caller cancels or a deadline fires.
        self._queue: dict[_Request, None] = {}
        self._queued_items: collections.Counter[Signature] = collections.Counter()
        self._queued_bytes = 0
        # Callers of the last finished batch not yet back, and until when they are waited for.
        self._awaited = 0
        self._awaited_until = 0.0
        # Neither binds to an event loop before its first wait, so construction needs no loop.
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._accepting = True

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the inputs of the requests waiting for a batch."""
        return self._queued_bytes

    @property
    def accepting(self) -> bool:
        return self._accepting

    def start(self) -> None:
        """Start the dispatch loop in the running event loop; ``infer`` calls this itself, and
        restarts a loop that died (its requests were failed, the next ones deserve a try)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name=f"batcher:{self.name}")

    async def infer(self, inputs: Mapping[str, np.ndarray], *, deadline: float | None = None) -> Tensors:
        """Queue ``inputs`` (n >= 1 items on the leading axis of each) and return the outputs of
        exactly those n items. ``deadline`` is in ``loop.time()`` units.

        Raises UNAVAILABLE once closing, INVALID_ARGUMENT for an empty, ragged or oversized
        request, RESOURCE_EXHAUSTED when the queue is full, DEADLINE_EXCEEDED when the deadline
        passes before the request's batch starts, and whatever its run raised (as INTERNAL
        unless it is a ServingError). Cancelling the caller drops a request not yet computed.
        """
        if not self._accepting:
            raise errors.Unavailable(f"model {self.name!r} is shutting down and takes no new requests")
        items = self._count_items(inputs)
        if len(self._queue) >= self.max_queue_size:
            raise errors.ResourceExhausted(
                f"model {self.name!r}: queue full ({len(self._queue)} requests waiting, "
                f"max_queue_size {self.max_queue_size}); retry later"
            )
        nbytes = sum(a.nbytes for a in inputs.values())
        if self.max_queue_bytes is not None and self._queued_bytes + nbytes > self.max_queue_bytes:
            raise errors.ResourceExhausted(
                f"model {self.name!r}: queue full ({self._queued_bytes:,} bytes waiting, this request "
                f"{nbytes:,} bytes, max_queue_bytes {self.max_queue_bytes:,}); retry later"
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is not None and deadline <= now:
            raise errors.DeadlineExceeded(f"model {self.name!r}: deadline passed before the request was queued")
        idle = self._arrives(now)
        if (
            idle
            and self._run_inline is not None
            and now - self._last_finished >= self._lone_gap
            and (self._alone is None or self._alone())
        ):
            outputs = self._inline(inputs, items, now)
            if outputs is not None:
                return outputs
        self.start()
        request = _Request(dict(inputs), items, signature_of(inputs), loop.create_future(), now, deadline)
        request.nbytes = nbytes
        request.found_idle = idle
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

    def _count_items(self, inputs: Mapping[str, np.ndarray]) -> int:
        sizes = {a.shape[0] if isinstance(a, np.ndarray) and a.ndim else 0 for a in inputs.values()}
        if len(sizes) != 1 or 0 in sizes:
            shapes = {name: list(np.shape(a)) for name, a in inputs.items()}
            raise errors.InvalidArgument(
                f"model {self.name!r}: every input needs the same batch size of at least 1, got shapes {shapes}"
            )
        (items,) = sizes
        if items > self.max_batch_size:
            raise errors.InvalidArgument(
                f"model {self.name!r}: batch of {items} exceeds max_batch_size {self.max_batch_size}"
            )
        return items

    def _arrives(self, now: float) -> bool:
        """Note an arrival at loop time ``now``; True when it finds the model idle: nothing
        running, nothing queued, none of the last batch's callers still expected."""
        if self._awaited:
            self._awaited -= 1  # one of the last batch's callers, most likely: one fewer to wait for
        expecting = self._awaited > 0 and now < self._awaited_until
        return not self._running and not self._queue and not expecting

    def _inline(self, inputs: Mapping[str, np.ndarray], items: int, arrived: float) -> Tensors | None:
        """Run a lone request at once, on the event loop's thread: for a model whose run is
        cheaper than the hop to a worker thread and back, nothing else could have joined it
        anyway. No future, no task: the outputs are returned (or the failure raised) here, and
        accounted exactly as a batch of one that waited 0 s. None (nothing done, nothing
        counted) when the runtime has no instance free for it."""
        assert self._run_inline is not None
        started = time.perf_counter()
        result: Mapping[str, np.ndarray] | TimedOutputs | Exception | None
        try:
            result = self._run_inline([inputs])
        except Exception as exc:
            result = exc
        if result is None:
            return None
        self.stats.request_count += 1
        self._observe(self._observer.on_dequeue, self.name, 0.0)
        try:
            if isinstance(result, Exception):
                raise result
            outputs, seconds = self._record(result, items, 1, elapsed=time.perf_counter() - started)
        except Exception as exc:
            self._count_failure(asyncio.get_running_loop().time() - arrived)
            raise self._error(exc)  # noqa: B904 (_error chains the cause itself)
        self._count_success(asyncio.get_running_loop().time() - arrived, 0.0, seconds)
        return dict(outputs)

    def _enqueue(self, request: _Request) -> None:
        self._queue[request] = None
        self._queued_items[request.signature] += request.items
        self._queued_bytes += request.nbytes
        self.stats.request_count += 1
        if request.deadline is not None:
            request.timer = request.future.get_loop().call_at(request.deadline, self._expire, request)
        request.future.add_done_callback(functools.partial(self._settle, request))
        self._wake.set()

    def _unqueue(self, request: _Request) -> bool:
        """Take ``request`` off the queue; False if it was not there."""
        if request not in self._queue:
            return False
        del self._queue[request]
        self._queued_items[request.signature] -= request.items
        self._queued_bytes -= request.nbytes
        if not self._queued_items[request.signature]:
            del self._queued_items[request.signature]
        if request.timer is not None:
            request.timer.cancel()
        return True

    def _expire(self, request: _Request) -> None:
        """The deadline timer of a queued request: it is failed, and never computed."""
        if request.future.done() or not self._unqueue(request):
            return
        waited = request.future.get_loop().time() - request.arrived
        request.future.set_exception(
            errors.DeadlineExceeded(f"model {self.name!r}: deadline passed after {waited:.3f}s in the queue")
        )
        self._observe(self._observer.on_drop, self.name, "deadline")
        self._wake.set()  # the oldest request may have been this one

    def _settle(self, request: _Request, future: asyncio.Future[Tensors]) -> None:
        """Done callback of every accepted request: the one place its outcome is counted.

        A future settles once, so counting here cannot count a request twice, whichever path
        (result, failure, deadline, cancellation by its caller, shutdown) resolved it.
        """
        # Every path that resolves a request takes it off the queue first, except a caller's
        # cancellation: a request still queued here was cancelled.
        if self._unqueue(request):
            self._wake.set()
        now = future.get_loop().time()
        if future.cancelled():
            self.stats.cancel_count += 1
            if request.started is None:
                self._observe(self._observer.on_drop, self.name, "cancelled")
        elif future.exception() is not None:
            self._count_failure(now - request.arrived)
        else:
            assert request.started is not None
            self._count_success(now - request.arrived, request.started - request.arrived, request.compute_seconds)

    def _count_success(self, seconds: float, queue_seconds: float, compute_seconds: float) -> None:
        s = self.stats
        s.success_count += 1
        s.success_ns += _ns(seconds)
        s.queue_count += 1
        s.queue_ns += _ns(queue_seconds)
        s.compute_count += 1
        s.compute_ns += _ns(compute_seconds)

    def _count_failure(self, seconds: float) -> None:
        self.stats.fail_count += 1
        self.stats.fail_ns += _ns(seconds)

    def _fail_queued(self, error: type[errors.ServingError], message: str, *, reason: str) -> None:
        for request in list(self._queue):
            self._unqueue(request)
            if not request.future.done():
                request.future.set_exception(error(message))
                self._observe(self._observer.on_drop, self.name, reason)

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

    async def _next_batch(self) -> list[_Request] | None:
        """Wait until the oldest signature's batch should leave, and take it off the queue;
        None once closed and drained."""
        loop = asyncio.get_running_loop()
        while True:
            oldest = self._oldest()
            if oldest is None:
                if not self._accepting:
                    return None
                await self._sleep(until=None)
                continue
            due = oldest.arrived + self.max_queue_delay
            # Enough items queued means the FIFO prefix either reaches the target or cannot grow
            # (its next request would overflow max_batch_size): either way, waiting gains nothing.
            full = self._queued_items[oldest.signature] >= self._target
            # A request that finds the model idle goes at once: nothing suggests company is
            # coming (one caller waiting for its reply sends nothing more), and asyncio's timers
            # are too coarse (~1 ms) to wait a little. One that arrived while a batch ran waits
            # for batch-mates as configured: more requests are in flight.
            if not self._accepting or oldest.found_idle:
                return self._take(oldest.signature, cut_to_preferred=False)
            if full:
                return self._take(oldest.signature, cut_to_preferred=True)
            now = loop.time()
            if now >= due:
                if self._awaited and now < self._awaited_until:
                    await self._sleep(until=self._awaited_until)  # the last batch's callers may come back
                    continue
                return self._take(oldest.signature, cut_to_preferred=False)
            await self._sleep(until=due)

    def _oldest(self) -> _Request | None:
        # Requests whose caller just cancelled stay until their done callback runs: skip them.
        return next((r for r in self._queue if not r.future.done()), None)

    async def _sleep(self, *, until: float | None) -> None:
        """Until something is queued or leaves the queue, or the loop time ``until``."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await self._wake.wait()

    def _take(self, signature: Signature, *, cut_to_preferred: bool) -> list[_Request]:
        """Take the FIFO run of ``signature``'s requests that fits in ``max_batch_size``; when
        ``cut_to_preferred``, only its longest prefix that adds up to a preferred size."""
        batch: list[_Request] = []
        total = 0
        preferred_end = 0
        for request in self._queue:
            if request.signature != signature or request.future.done():
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
            self._unqueue(request)
        return batch

    # -- running a batch ------------------------------------------------------------------------

    async def _execute(self, batch: list[_Request]) -> None:
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

    async def _compute_batch(self, batch: list[_Request]) -> None:
        now = asyncio.get_running_loop().time()
        # A caller may have cancelled between the take and now: it is dropped, not computed.
        live = [r for r in batch if not r.future.done()]
        for request in live:
            request.started = now
            self._observe(self._observer.on_dequeue, self.name, now - request.arrived)
        if not live:
            return
        try:
            await self._compute(live)
        except Exception as exc:
            if len(live) == 1:
                self._fail(live[0], exc)
                return
            # One bad request must not fail its batch-mates: run each alone, so only it fails.
            log.warning(
                "model %s: a batch of %d requests failed (%s: %s); running each alone",
                self.name,
                len(live),
                type(exc).__name__,
                exc,
            )
            for request in live:
                if request.future.done():
                    continue
                try:
                    await self._compute([request])
                except Exception as single:
                    self._fail(request, single)

    async def _compute(self, requests: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._run_parts is not None:
            result = await self._run_parts([r.inputs for r in requests])
        else:
            inputs = requests[0].inputs if len(requests) == 1 else _concatenate(r.inputs for r in requests)
            result = await self._run(inputs)
        self._finish(requests, result, elapsed=loop.time() - started)

    def _finish(
        self, requests: list[_Request], result: Mapping[str, np.ndarray] | TimedOutputs, *, elapsed: float
    ) -> None:
        """Record a batch's run and resolve its requests with their slices of the outputs."""
        outputs, seconds = self._record(result, sum(r.items for r in requests), len(requests), elapsed=elapsed)
        offset = 0
        for request in requests:
            request.compute_seconds = seconds
            if not request.future.done():
                request.future.set_result({name: v[offset : offset + request.items] for name, v in outputs.items()})
            offset += request.items

    def _record(
        self, result: Mapping[str, np.ndarray] | TimedOutputs, size: int, callers: int, *, elapsed: float
    ) -> tuple[Mapping[str, np.ndarray], float]:
        """Check and record a run of ``size`` items for ``callers`` requests; return its outputs
        and compute seconds (the runtime's own timing, else ``elapsed``)."""
        if isinstance(result, Mapping):
            outputs, seconds = result, elapsed
        else:  # the runtime timed the session call itself
            outputs, seconds = result.outputs, result.compute_seconds
        self._check_outputs(outputs, size)
        copied = getattr(result, "copy_seconds", None)
        if copied is not None:
            self._observe(self._observer.on_copy, self.name, copied)
        self._record_execution(size, seconds)
        self._awaited = callers
        self._last_finished = asyncio.get_running_loop().time()
        self._awaited_until = self._last_finished + self.max_queue_delay
        return outputs, seconds

    def _check_outputs(self, outputs: Mapping[str, np.ndarray], size: int) -> None:
        for name, value in outputs.items():
            shape = np.shape(value)
            if shape[:1] != (size,):
                raise errors.Internal(
                    f"model {self.name!r}: output {name!r} has shape {list(shape)}, expected {size} items first"
                )

    def _record_execution(self, size: int, seconds: float) -> None:
        s = self.stats
        s.execution_count += 1
        s.inference_count += size
        runs, ns = s.batch_sizes.get(size, (0, 0))
        s.batch_sizes[size] = (runs + 1, ns + _ns(seconds))
        self._observe(self._observer.on_batch, self.name, size, seconds)

    def _fail(self, request: _Request, exc: Exception) -> None:
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

    def _fail_all(self, requests: list[_Request], error: type[errors.ServingError], message: str) -> None:
        for request in requests:
            if not request.future.done():
                # One instance per request: an exception's traceback is written as it is raised.
                request.future.set_exception(error(message))

    def _observe(self, event: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
        # Metrics are not worth a request: a failing observer is logged, never propagated.
        try:
            event(*args, **kwargs)
        except Exception:
            log.exception("model %s: batch observer failed", self.name)


def _concatenate(parts: Iterable[Tensors]) -> Tensors:
    parts = list(parts)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
