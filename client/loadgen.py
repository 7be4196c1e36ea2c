"""Load generation against a running server: closed loop (N callers, each sending its next request
when the last returns) or open loop (Poisson arrivals at a fixed rate, since a closed loop slows
down with the server and hides queueing).

Open-loop latencies run from each request's scheduled send time, not from when the client got
round to sending it, so a client that falls behind shows up as latency instead of being hidden
(the "coordinated omission" trap).

The load stops after ``requests`` requests or ``duration`` seconds, whichever is given; Ctrl-C
stops it early and the report keeps what was measured (``interrupted`` is set).

It speaks gRPC by default; ``connect=http_connect(...)`` with ``make_call=http_post(...)`` load
an HTTP server the same way, over keep-alive connections.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import numpy as np

from cnnserve.client.channel import aio_channel

if TYPE_CHECKING:
    import aiohttp  # imported by the HTTP functions only: gRPC loads do without it

Call = Callable[[], Awaitable[Any]]
Progress = Callable[[int, int, float], None]  # (ok, failed, seconds since the start)
C = TypeVar("C")  # what a connection is: a gRPC channel, an HTTP session


class CallFailed(Exception):
    """A failed request, from calls that fail otherwise than by a gRPC error (HTTP): counted
    under ``code`` as gRPC's failures are under their status code's name."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


@dataclass
class LoadReport:
    items_per_request: int
    latencies: list[float] = field(default_factory=list)  # seconds, one per successful request
    errors: collections.Counter[str] = field(default_factory=collections.Counter)  # status code name
    error_messages: dict[str, str] = field(default_factory=dict)  # the first message of each code
    seconds: float = 0.0  # the measured span
    interrupted: bool = False

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def requests_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def items_per_second(self) -> float:
        return self.requests_per_second * self.items_per_request

    def percentile(self, p: float) -> float:
        """Latency percentile in seconds; NaN when nothing succeeded."""
        return float(np.percentile(self.latencies, p)) if self.latencies else float("nan")

    def summary(self) -> dict[str, Any]:
        ms = {f"p{p}_ms": self.percentile(p) * 1e3 for p in (50, 90, 99)}
        return {
            "requests_ok": self.ok,
            "requests_failed": self.failed,
            "errors": dict(self.errors),
            "seconds": self.seconds,
            "requests_per_second": self.requests_per_second,
            "items_per_second": self.items_per_second,
            **ms,
            "max_ms": max(self.latencies) * 1e3 if self.latencies else float("nan"),
            "interrupted": self.interrupted,
        }


class _Recorder:
    def __init__(self, report: LoadReport, progress: Progress | None) -> None:
        self.report = report
        self.progress = progress
        self.measuring = False
        self.began = time.perf_counter()

    async def timed(self, call: Call, since: float | None = None) -> None:
        started = time.perf_counter() if since is None else since
        counted = self.measuring  # requests sent during the warm-up are not measured
        failure: tuple[str, str] | None = None
        try:
            await call()
        except grpc.aio.AioRpcError as exc:
            failure = exc.code().name, exc.details() or ""
        except CallFailed as exc:
            failure = exc.code, exc.message
        if not counted:
            return
        if failure is None:
            self.report.latencies.append(time.perf_counter() - started)
        else:
            name, message = failure
            self.report.errors[name] += 1
            self.report.error_messages.setdefault(name, message)
        if self.progress is not None:
            self.progress(self.report.ok, self.report.failed, time.perf_counter() - self.began)

    def start_measuring(self) -> None:
        self.measuring = True
        self.began = time.perf_counter()


async def _closed(
    calls: list[Call], recorder: _Recorder, concurrency: int, requests: int | None, stop_at: float
) -> None:
    issued = 0

    async def caller(call: Call) -> None:
        nonlocal issued
        while time.perf_counter() < stop_at and (requests is None or not recorder.measuring or issued < requests):
            if recorder.measuring:
                issued += 1
            await recorder.timed(call)

    await asyncio.gather(*(caller(calls[i % len(calls)]) for i in range(concurrency)))


async def _open(
    calls: list[Call], recorder: _Recorder, rate: float, requests: int | None, stop_at: float, seed: int
) -> None:
    rng = random.Random(seed)
    sent = 0
    running: set[asyncio.Task[None]] = set()
    issued = 0
    next_at = time.perf_counter()
    while next_at < stop_at and (requests is None or not recorder.measuring or issued < requests):
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if recorder.measuring:
            issued += 1
        task = asyncio.create_task(recorder.timed(calls[sent % len(calls)], since=next_at))
        sent += 1
        running.add(task)
        task.add_done_callback(running.discard)
        next_at += rng.expovariate(rate)
    if running:
        await asyncio.gather(*running)


def run_load(
    address: str,
    make_call: Callable[[C], Call],
    *,
    items_per_request: int = 1,
    concurrency: int = 1,
    requests: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
    warmup: float = 0.0,
    progress: Progress | None = None,
    on_start: Callable[[], object] | None = None,
    seed: int = 0,
    connections: int = 1,
    connect: Callable[[str], contextlib.AbstractAsyncContextManager[C]] | None = None,
) -> LoadReport:
    """Run the load against the server at ``address`` in a fresh event loop, over
    ``connections`` channels, each its own TCP connection (callers, or open-loop requests, take
    them in turn; a server of several workers spreads connections, not calls);
    ``make_call(channel)`` returns the coroutine function that sends one request.

    ``connect(address)`` opens what ``make_call`` is given instead of a gRPC channel, as an async
    context manager, ``connections`` times: :func:`http_connect` for an HTTP server.

    ``rate`` (requests per second) selects the open loop, else ``concurrency`` callers loop. The
    first ``warmup`` seconds are not measured; ``on_start`` is called as measuring begins (to
    read the server's metrics at that moment).
    """
    if requests is None and duration is None:
        raise ValueError("give requests or duration")
    report = LoadReport(items_per_request)
    recorder = _Recorder(report, progress)
    opener = connect if connect is not None else lambda a: aio_channel(a, own_connection=connections > 1)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            opened = [await stack.enter_async_context(opener(address)) for _ in range(connections)]
            calls = [make_call(connection) for connection in opened]
            stop_at = time.perf_counter() + warmup + (duration if duration is not None else 1e9)
            if rate is not None:
                load = _open(calls, recorder, rate, requests, stop_at, seed)
            else:
                load = _closed(calls, recorder, concurrency, requests, stop_at)
            task = asyncio.ensure_future(load)
            try:
                if warmup > 0:
                    await asyncio.sleep(warmup)
                if on_start is not None:
                    on_start()
                recorder.start_measuring()
                await task
            finally:
                # On Ctrl-C asyncio.run cancels this coroutine: stop the callers before the channel
                # closes, or they would go on failing against the closed channel until the end.
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    started = time.perf_counter()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        report.interrupted = True
    report.seconds = time.perf_counter() - max(recorder.began, started) if recorder.measuring else 0.0
    return report


def http_connect(limit: int = 0) -> Callable[[str], aiohttp.ClientSession]:
    """``connect`` for an HTTP server: an aiohttp session on ``http://ADDRESS`` whose pool keeps
    up to ``limit`` connections alive, 0 for one per request in flight (a closed loop's callers
    each keep theirs; HTTP/1.1 sends one request at a time on a connection)."""
    import aiohttp

    def connect(address: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(f"http://{address}", connector=aiohttp.TCPConnector(limit=limit))

    return connect


def http_post(
    path: str, body: bytes, headers: Mapping[str, str] | None = None
) -> Callable[[aiohttp.ClientSession], Call]:
    """``make_call`` for an HTTP server: POST ``body`` to ``path`` and read the whole reply, which
    the call returns. A status other than 200 fails the request as ``HTTP <status>`` (the start
    of the reply as its message); a connection error as the exception's class name."""
    import aiohttp

    def make_call(session: aiohttp.ClientSession) -> Call:
        async def call() -> bytes:
            try:
                async with session.post(path, data=body, headers=headers) as response:
                    reply = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise CallFailed(type(exc).__name__, str(exc)) from None
            if response.status != 200:
                raise CallFailed(f"HTTP {response.status}", reply[:500].decode("utf-8", "replace"))
            return reply

        return call

    return make_call
