"""Dynamic batching: concurrent requests for one model joined into one ONNX Runtime run.

Policy (Triton's, simplified): requests with the same item signature (input names, dtypes and
shapes without the batch axis) queue in arrival order; a batch leaves as soon as a free model
instance exists and either the queued items reach the largest preferred batch size (or
``max_batch_size``), or the oldest request has waited ``max_queue_delay_us``. A request is never
split across batches and a batch never exceeds ``max_batch_size``.

Every accepted request's future is resolved exactly once, with its outputs or an exception,
whatever happens: a failing batch is retried request by request so that only the bad request
fails; a request whose caller went away is dropped before compute; if the batcher's own loop
dies, everything queued fails with INTERNAL and the next request starts a fresh loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from server import errors

log = logging.getLogger("cnnserve.batching")

Signature = tuple[tuple[str, str, tuple[int, ...]], ...]


class BatchResult(Protocol):
    outputs: dict[str, np.ndarray]
    compute_seconds: float


RunBatch = Callable[[dict[str, np.ndarray]], Awaitable[BatchResult]]


class BatchObserver(Protocol):
    """What the batcher reports (server.metrics.Metrics implements it)."""

    def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None: ...

    def on_dequeue(self, model: str, queue_seconds: float) -> None: ...

    def on_drop(self, model: str, reason: str) -> None: ...


class _NullObserver:
    def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None:
        pass

    def on_dequeue(self, model: str, queue_seconds: float) -> None:
        pass

    def on_drop(self, model: str, reason: str) -> None:
        pass


@dataclass
class BatcherStats:
    """Cumulative counts for ModelStatistics, as Triton reports them."""

    success_count: int = 0
    success_ns: int = 0  # queue + compute of successful requests
    fail_count: int = 0
    fail_ns: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    compute_count: int = 0
    compute_ns: int = 0
    inference_count: int = 0  # items computed
    execution_count: int = 0  # batches run
    batch_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # size -> (count, compute ns)


@dataclass(eq=False)
class _Request:
    inputs: dict[str, np.ndarray]
    items: int
    signature: Signature
    future: asyncio.Future[dict[str, np.ndarray]]
    arrived: float
    deadline: float | None
    dequeued: float = 0.0


def signature_of(inputs: dict[str, np.ndarray]) -> Signature:
    return tuple(sorted((name, a.dtype.str, tuple(a.shape[1:])) for name, a in inputs.items()))


class DynamicBatcher:
    def __init__(
        self,
        name: str,
        run: RunBatch,
        *,
        max_batch_size: int,
        max_queue_delay_us: int,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue_size: int | None = None,
        concurrency: int = 1,
        observer: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay_us / 1e6
        preferred = [b for b in preferred_batch_sizes if b <= max_batch_size]
        self.target = max(preferred) if preferred else max_batch_size
        self.max_queue_size = max_queue_size or 8 * max_batch_size
        self.concurrency = concurrency
        self.observer: BatchObserver = observer or _NullObserver()
        self.stats = BatcherStats()
        self._queue: collections.deque[_Request] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            if self._wake is None:
                self._wake = asyncio.Event()
                self._slots = asyncio.Semaphore(self.concurrency)
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def infer(self, inputs: dict[str, np.ndarray], *, deadline: float | None = None) -> dict[str, np.ndarray]:
        """Queue ``inputs`` (n >= 1 items on the leading axis) and return the outputs of those n."""
        if self._closing:
            raise errors.Unavailable(f"model {self.name!r} is shutting down and takes no new requests")
        items = {a.shape[0] if a.ndim else 0 for a in inputs.values()}
        if len(items) != 1 or 0 in items:
            raise errors.InvalidArgument(f"model {self.name!r}: every input needs the same batch size of at least 1")
        (n,) = items
        if n > self.max_batch_size:
            raise errors.InvalidArgument(
                f"model {self.name!r}: batch of {n} exceeds max_batch_size {self.max_batch_size}"
            )
        if len(self._queue) >= self.max_queue_size:
            raise errors.ResourceExhausted(
                f"model {self.name!r}: queue full ({self.max_queue_size} requests waiting); retry later"
            )
        self._ensure_started()
        loop = asyncio.get_running_loop()
        request = _Request(inputs, n, signature_of(inputs), loop.create_future(), loop.time(), deadline)
        self._queue.append(request)
        assert self._wake is not None
        self._wake.set()
        # Cancelling the caller cancels this future; the loop then skips the request.
        return await request.future

    async def _loop(self) -> None:
        assert self._wake is not None and self._slots is not None
        try:
            while True:
                self._drop_dead()
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._slots.acquire()
                try:
                    batch = await self._gather()
                except BaseException:
                    self._slots.release()
                    raise
                if not batch:
                    self._slots.release()
                    continue
                task = asyncio.get_running_loop().create_task(self._execute(batch))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        except asyncio.CancelledError:
            self._fail_queued(errors.Unavailable(f"model {self.name!r}: batcher stopped"))
            raise
        except Exception as exc:
            log.exception("batcher of %s died; failing its queued requests", self.name)
            self._fail_queued(errors.Internal(f"model {self.name!r}: batcher failed: {type(exc).__name__}: {exc}"))

    async def _gather(self) -> list[_Request]:
        """Wait until the oldest signature's batch should leave, then take it from the queue."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._drop_dead()
            if not self._queue:
                return []
            oldest = self._queue[0]
            queued = sum(r.items for r in self._queue if r.signature == oldest.signature)
            wait = oldest.arrived + self.max_queue_delay - loop.time()
            if queued >= self.target or wait <= 0 or self._closing:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
        batch: list[_Request] = []
        total = 0
        now = loop.time()
        for request in list(self._queue):
            if request.signature != oldest.signature or request.future.done():
                continue
            if total + request.items > self.max_batch_size:
                break
            self._queue.remove(request)
            request.dequeued = now
            self.observer.on_dequeue(self.name, now - request.arrived)
            batch.append(request)
            total += request.items
        return batch

    def _drop_dead(self) -> None:
        """Drop requests whose caller cancelled or whose deadline passed: never computed."""
        if not self._queue:
            return
        now = asyncio.get_running_loop().time()
        keep: collections.deque[_Request] = collections.deque()
        for request in self._queue:
            if request.future.done():
                self.observer.on_drop(self.name, "cancelled")
            elif request.deadline is not None and request.deadline <= now:
                request.future.set_exception(
                    errors.DeadlineExceeded(f"model {self.name!r}: deadline passed while queued")
                )
                self.observer.on_drop(self.name, "deadline")
            else:
                keep.append(request)
        self._queue = keep

    async def _execute(self, batch: list[_Request]) -> None:
        assert self._slots is not None
        try:
            live = [r for r in batch if not r.future.done()]
            if not live:
                return
            try:
                await self._compute(live)
            except Exception as exc:
                if len(live) == 1:
                    self._fail(live[0], exc)
                    return
                # One bad request must not fail its batch-mates: run each alone.
                for request in live:
                    if request.future.done():
                        continue
                    try:
                        await self._compute([request])
                    except Exception as single:
                        self._fail(request, single)
        except BaseException as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(errors.Internal(f"model {self.name!r}: {exc!r}"))
            raise
        finally:
            self._slots.release()

    async def _compute(self, requests: list[_Request]) -> None:
        if len(requests) == 1:
            inputs = requests[0].inputs
        else:
            names = requests[0].inputs.keys()
            inputs = {n: np.concatenate([r.inputs[n] for r in requests]) for n in names}
        size = sum(r.items for r in requests)
        result = await self._run(inputs)
        for name, value in result.outputs.items():
            if value.shape[:1] != (size,):
                raise errors.Internal(f"model {self.name!r}: output {name!r} has shape {value.shape}, batch is {size}")
        self._record_batch(size, result.compute_seconds)
        done = asyncio.get_running_loop().time()
        offset = 0
        for request in requests:
            part = {k: v[offset : offset + request.items] for k, v in result.outputs.items()}
            offset += request.items
            if not request.future.done():
                request.future.set_result(part)
            self._record_request(request, done, ok=True)

    def _fail(self, request: _Request, exc: BaseException) -> None:
        error = (
            exc
            if isinstance(exc, errors.ServingError)
            else errors.Internal(f"model {self.name!r}: inference failed: {type(exc).__name__}: {exc}")
        )
        if not request.future.done():
            request.future.set_exception(error)
        self._record_request(request, asyncio.get_running_loop().time(), ok=False)

    def _record_batch(self, size: int, seconds: float) -> None:
        ns = int(seconds * 1e9)
        s = self.stats
        s.execution_count += 1
        s.inference_count += size
        s.compute_count += 1
        s.compute_ns += ns
        count, total = s.batch_sizes.get(size, (0, 0))
        s.batch_sizes[size] = (count + 1, total + ns)
        self.observer.on_batch(self.name, size, seconds)

    def _record_request(self, request: _Request, done: float, *, ok: bool) -> None:
        s = self.stats
        s.queue_count += 1
        s.queue_ns += int((request.dequeued - request.arrived) * 1e9)
        if ok:
            s.success_count += 1
            s.success_ns += int((done - request.arrived) * 1e9)
        else:
            s.fail_count += 1
            s.fail_ns += int((done - request.arrived) * 1e9)

    def _fail_queued(self, error: errors.ServingError) -> None:
        while self._queue:
            request = self._queue.popleft()
            if not request.future.done():
                request.future.set_exception(error)

    async def close(self, *, drain: bool = True) -> None:
        """Take no new requests; answer the accepted ones (``drain``) or fail them UNAVAILABLE."""
        self._closing = True
        if not drain:
            self._fail_queued(errors.Unavailable(f"model {self.name!r} is shutting down"))
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
