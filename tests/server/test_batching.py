"""The dynamic batcher, driven by a fake model whose runs can be held at a gate.

Nothing here asserts on time: situations (a busy model, a full queue, a request left waiting)
are made with gates and events, and the assertions are about which requests shared which batch
and what each caller got. Timeouts are safety nets only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np
import pytest

from cnnserve.server import errors
from cnnserve.server.batching import DynamicBatcher

BAD = -1.0  # an item of this value makes the fake model raise InvalidArgument (a ServingError)
BOOM = -2.0  # ... and this one a ValueError (an unexpected failure)
HOUR_US = 3_600_000_000  # a queue delay no test waits out: only size, or a drain, can dispatch


@dataclass
class FakeModel:
    """Doubles ``x``; records each batch (the first column of its items) as it starts; can be
    held at a gate (``held=True``: closed until ``gate.set()``), and fails on the marker values."""

    held: InitVar[bool] = False
    gate: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    batches: list[list[float]] = field(default_factory=list)
    shapes: list[tuple[tuple[int, ...], str]] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    async def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.batches.append(x.reshape(len(x), -1)[:, 0].tolist())
        self.shapes.append((x.shape, x.dtype.name))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        if (x == BAD).any():
            raise errors.InvalidArgument("input 'x': bad item")
        if (x == BOOM).any():
            raise ValueError("model exploded")
        return {"y": x * 2, "n": np.arange(len(x))}

    def __post_init__(self, held: bool) -> None:
        if not held:
            self.gate.set()


@dataclass
class Timed:
    """What a runtime that times its own session call returns."""

    outputs: dict[str, np.ndarray]
    compute_seconds: float


@dataclass
class Copied(Timed):
    """What a runtime that also copies the inputs into buffers of its own returns."""

    copy_seconds: float = 0.0


@dataclass
class Recorder:
    """A batch observer that remembers every event."""

    batches: list[int] = field(default_factory=list)
    dequeued: int = 0
    drops: list[str] = field(default_factory=list)
    copies: list[float] = field(default_factory=list)

    def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None:
        assert model == "fake" and compute_seconds >= 0
        self.batches.append(batch_size)

    def on_dequeue(self, model: str, queue_seconds: float) -> None:
        assert model == "fake" and queue_seconds >= 0
        self.dequeued += 1

    def on_drop(self, model: str, reason: str) -> None:
        assert model == "fake"
        self.drops.append(reason)

    def on_copy(self, model: str, copy_seconds: float) -> None:
        assert model == "fake"
        self.copies.append(copy_seconds)


def items(*values: float, width: int = 1, dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"x": np.array([[v] * width for v in values], dtype=dtype)}


def doubled(result: dict[str, np.ndarray]) -> list[float]:
    return [float(v) for v in result["y"][:, 0]]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=20))  # a safety net, not a timing


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


class Batcher(DynamicBatcher):
    """The batcher as the data plane calls it: with the request's item count, which the data
    plane knows from checking the request against the model."""

    async def infer(  # type: ignore[override]
        self, inputs: Mapping[str, np.ndarray], *, items: int | None = None, deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        return await super().infer(inputs, items=len(inputs["x"]) if items is None else items, deadline=deadline)


def joined(model: Callable[[dict[str, np.ndarray]], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A model of one batch as the runtime's run: the batcher hands over each request's tensors,
    and the runtime joins them."""

    async def run(parts: list[Mapping[str, np.ndarray]]) -> Any:
        return await model({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})

    return run


def make(model: Callable[..., Awaitable[Any]], **options: Any) -> Batcher:
    settings: dict[str, Any] = {"max_batch_size": 8, "max_queue_delay_us": 0} | options
    return Batcher("fake", joined(model), **settings)


async def busy(model: FakeModel, batcher: DynamicBatcher, *values: float) -> asyncio.Task[dict[str, np.ndarray]]:
    """Start a request and wait until the (gated) model is computing it: what comes next queues."""
    started = len(model.batches)
    task = asyncio.create_task(batcher.infer(items(*values)))
    await until(lambda: len(model.batches) > started)
    return task


def submit(batcher: DynamicBatcher, *requests: dict[str, np.ndarray]) -> list[asyncio.Task[dict[str, np.ndarray]]]:
    return [asyncio.create_task(batcher.infer(r)) for r in requests]


# -- batching ----------------------------------------------------------------------------------


def test_a_single_request_is_answered() -> None:
    async def test() -> None:
        model = FakeModel()
        batcher = make(model)
        out = await batcher.infer(items(3.0, 4.0))
        assert doubled(out) == [6.0, 8.0] and out["n"].tolist() == [0, 1]
        assert model.batches == [[3.0, 4.0]]

    run(test)


def test_the_batcher_can_be_built_outside_an_event_loop() -> None:
    model = FakeModel()
    batcher = make(model)  # no loop runs here: the server builds batchers before serving

    async def test() -> None:
        batcher.start()
        assert doubled(await batcher.infer(items(1.0))) == [2.0]

    run(test)


def test_concurrent_requests_join_one_batch_and_results_split_back_exactly() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model)
        first = await busy(model, batcher, 1.0)
        rest = submit(batcher, items(2.0, 3.0), items(4.0), items(5.0, 6.0, 7.0))
        await until(lambda: batcher.queued == 3)
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        assert model.batches == [[1.0], [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
        assert [doubled(r) for r in results] == [[2.0], [4.0, 6.0], [8.0], [10.0, 12.0, 14.0]]
        # Every output is sliced, not only the first: the item index restarts per caller.
        assert [r["n"].tolist() for r in results] == [[0], [0, 1], [2], [3, 4, 5]]

    run(test)


def test_max_batch_size_is_respected_and_requests_are_never_split() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model, max_batch_size=4)
        first = await busy(model, batcher, 0.0)
        rest = submit(batcher, items(1, 1, 1), items(2, 2), items(3), items(4, 4, 4, 4))
        await until(lambda: batcher.queued == 4)
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        # FIFO: [2, 2] does not fit beside [1, 1, 1], so it leads the next batch; [3] does not overtake it.
        assert model.batches == [[0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 3.0], [4.0, 4.0, 4.0, 4.0]]
        assert [doubled(r) for r in results[1:]] == [[2.0] * 3, [4.0] * 2, [6.0], [8.0] * 4]

    run(test)


def test_a_lone_request_leaves_when_its_delay_is_over() -> None:
    async def test() -> None:
        model = FakeModel()
        batcher = make(model, max_queue_delay_us=2000)  # no preferred size, and 8 items will never come
        assert doubled(await batcher.infer(items(5.0))) == [10.0]
        assert model.batches == [[5.0]]

    run(test)


def test_a_batch_leaves_early_at_the_preferred_size() -> None:
    async def test() -> None:
        model = FakeModel()
        batcher = make(model, max_queue_delay_us=HOUR_US, preferred_batch_sizes=(4,))
        results = await asyncio.gather(*(batcher.infer(items(float(i))) for i in range(4)))
        assert model.batches == [[0.0, 1.0, 2.0, 3.0]]
        assert [doubled(r) for r in results] == [[0.0], [2.0], [4.0], [6.0]]

    run(test)


def test_a_batch_leaving_on_size_is_cut_at_the_preferred_size() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model, max_queue_delay_us=HOUR_US, preferred_batch_sizes=(2, 4))
        first = submit(batcher, *(items(0.0) for _ in range(4)))  # leaves at once: preferred size 4
        await until(lambda: len(model.batches) == 1)
        queued = submit(batcher, *(items(float(i)) for i in range(1, 7)))
        await until(lambda: batcher.queued == 6)
        model.gate.set()
        await asyncio.gather(*first, *queued[:4])
        assert model.batches == [[0.0] * 4, [1.0, 2.0, 3.0, 4.0]]  # 4 of the 6, not all that fit in 8
        await until(lambda: batcher.queued == 2)  # short of the target, the rest waits
        await batcher.close(drain=True)
        await asyncio.gather(*queued)
        assert model.batches[2:] == [[5.0, 6.0]]

    run(test)


def test_concurrency_two_runs_two_batches_at_once() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model, concurrency=2)
        first = await busy(model, batcher, 1.0)
        second = await busy(model, batcher, 2.0)  # would queue behind the first with one instance
        third = asyncio.create_task(batcher.infer(items(3.0)))
        await until(lambda: batcher.queued == 1)  # both instances busy: it waits
        assert model.running == 2
        model.gate.set()
        assert [doubled(r) for r in await asyncio.gather(first, second, third)] == [[2.0], [4.0], [6.0]]
        assert model.most_running == 2 and model.batches == [[1.0], [2.0], [3.0]]

    run(test)


# -- refusing and dropping ---------------------------------------------------------------------


def test_a_full_queue_refuses_at_once() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model, max_queue_size=2)
        first = await busy(model, batcher, 0.0)
        queued = submit(batcher, items(1.0), items(2.0))
        await until(lambda: batcher.queued == 2)
        refused = batcher.infer(items(9.0))
        # It raises on its first step: the caller is never left waiting.
        with pytest.raises(errors.ResourceExhausted, match=r"model 'fake': queue full .*max_queue_size 2"):
            refused.send(None)
        model.gate.set()
        await asyncio.gather(first, *queued)
        assert [9.0] not in model.batches and batcher.stats.request_count == 3

    run(test)


def test_the_batcher_hands_over_each_requests_tensors_unjoined() -> None:
    """The runtime joins them in its worker thread; the event loop only slices outputs."""

    async def test() -> None:
        handed: list[list[dict[str, np.ndarray]]] = []

        async def run_parts(parts: list[dict[str, np.ndarray]]) -> Copied:
            handed.append(parts)
            x = np.concatenate([p["x"] for p in parts])
            return Copied({"y": x * 2}, compute_seconds=0.5, copy_seconds=0.25)

        recorder = Recorder()
        batcher = Batcher("fake", run_parts, max_batch_size=8, max_queue_delay_us=HOUR_US,
                          preferred_batch_sizes=(4,), observer=recorder)  # fmt: skip
        requests = [items(1.0, 2.0), items(3.0), items(4.0)]
        results = await asyncio.gather(*(batcher.infer(r) for r in requests))
        assert [doubled(r) for r in results] == [[2.0, 4.0], [6.0], [8.0]]
        (parts,) = handed
        assert [p["x"] is r["x"] for p, r in zip(parts, requests, strict=True)] == [True, True, True]
        assert recorder.batches == [4] and recorder.copies == [0.25]  # the runtime's copy time, observed

    run(test)


def test_the_queue_is_bounded_in_bytes_too() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        # Items of 64 float32 values are 256 bytes: two such requests fit in 600 bytes, not three.
        batcher = make(model, max_queue_bytes=600, max_batch_size=1)
        first = await busy(model, batcher, 0.0)  # computing: no longer counted as queued
        queued = submit(batcher, items(1.0, width=64), items(2.0, width=64))
        await until(lambda: batcher.queued == 2)
        assert batcher.queued_bytes == 512
        refused = batcher.infer(items(9.0, width=64))
        with pytest.raises(
            errors.ResourceExhausted,
            match=r"model 'fake': queue full \(512 bytes waiting, this request 256 bytes, max_queue_bytes 600\)",
        ):
            refused.send(None)
        small = submit(batcher, items(3.0, width=16))  # 64 bytes still fit
        await until(lambda: batcher.queued == 3)
        model.gate.set()
        await asyncio.gather(first, *queued, *small)
        assert batcher.queued_bytes == 0 and [9.0] not in model.batches
        # A drained queue takes the same request again.
        assert doubled(await batcher.infer(items(9.0, width=64)))[0] == 18.0

    run(test)


def test_a_deadline_passing_in_the_queue_fails_the_request_uncomputed() -> None:
    async def test() -> None:
        model, recorder = FakeModel(held=True), Recorder()
        batcher = make(model, observer=recorder)
        first = await busy(model, batcher, 0.0)
        loop = asyncio.get_running_loop()
        expiring = asyncio.create_task(batcher.infer(items(7.0), deadline=loop.time() + 0.005))
        alive = asyncio.create_task(batcher.infer(items(1.0), deadline=loop.time() + 3600))
        with pytest.raises(errors.DeadlineExceeded, match=r"deadline passed after .* in the queue"):
            await expiring  # answered while the model is still busy, not when it frees up
        assert not model.gate.is_set() and batcher.queued == 1
        with pytest.raises(errors.DeadlineExceeded, match="before the request was queued"):
            await batcher.infer(items(8.0), deadline=loop.time() - 1)
        model.gate.set()
        assert [doubled(r) for r in await asyncio.gather(first, alive)] == [[0.0], [2.0]]
        assert model.batches == [[0.0], [1.0]]
        assert recorder.drops == ["deadline"]

    run(test)


def test_a_cancelled_caller_is_not_computed() -> None:
    async def test() -> None:
        model, recorder = FakeModel(held=True), Recorder()
        batcher = make(model, observer=recorder)
        first = await busy(model, batcher, 0.0)
        cancelled, alive = submit(batcher, items(8.0), items(1.0))
        await until(lambda: batcher.queued == 2)
        cancelled.cancel()
        await until(lambda: batcher.queued == 1)  # it leaves the queue at once, freeing its place
        model.gate.set()
        await asyncio.gather(first, alive)
        assert cancelled.cancelled()
        assert model.batches == [[0.0], [1.0]]
        assert recorder.drops == ["cancelled"] and batcher.stats.cancel_count == 1

    run(test)


def test_a_caller_cancelling_after_its_batch_formed_is_not_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def test() -> None:
        model, recorder = FakeModel(held=True), Recorder()
        batcher = make(model, observer=recorder)
        first = await busy(model, batcher, 0.0)
        victim, alive = submit(batcher, items(8.0), items(1.0))
        await until(lambda: batcher.queued == 2)
        take = batcher._policy.take

        def take_then_cancel(*args: Any, **kwargs: Any) -> Any:
            batch = take(*args, **kwargs)
            victim.cancel()  # its caller goes away after the batch formed, before it runs
            return batch

        monkeypatch.setattr(batcher._policy, "take", take_then_cancel)
        model.gate.set()
        await asyncio.gather(first, alive)
        assert victim.cancelled()
        assert model.batches == [[0.0], [1.0]] and recorder.drops == ["cancelled"]

    run(test)


# -- failures ----------------------------------------------------------------------------------


def test_a_failing_request_fails_alone() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model)
        first = await busy(model, batcher, 0.0)
        good1, bad, good2 = submit(batcher, items(1.0, 2.0), items(3.0, BAD), items(4.0))
        await until(lambda: batcher.queued == 3)
        model.gate.set()
        assert [doubled(r) for r in await asyncio.gather(first, good1, good2)] == [[0.0], [2.0, 4.0], [8.0]]
        with pytest.raises(errors.InvalidArgument, match="input 'x': bad item"):  # passed through as it was
            await bad
        # The batch ran once and failed; then each request ran alone.
        assert model.batches[1:] == [[1.0, 2.0, 3.0, BAD, 4.0], [1.0, 2.0], [3.0, BAD], [4.0]]
        assert batcher.stats.success_count == 3 and batcher.stats.fail_count == 1

    run(test)


def test_an_unexpected_error_of_the_model_is_internal() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model)
        first = await busy(model, batcher, 0.0)
        boom, good = submit(batcher, items(BOOM), items(1.0))
        await until(lambda: batcher.queued == 2)
        model.gate.set()
        assert doubled(await good) == [2.0]
        with pytest.raises(errors.Internal, match="model 'fake': inference failed: ValueError: model exploded") as info:
            await boom
        assert isinstance(info.value.__cause__, ValueError)
        await first

    run(test)


def test_a_failing_batch_of_one_is_not_run_again() -> None:
    async def test() -> None:
        model = FakeModel()
        batcher = make(model)
        with pytest.raises(errors.InvalidArgument, match="bad item"):
            await batcher.infer(items(BAD, 1.0))
        assert model.batches == [[BAD, 1.0]]

    run(test)


def test_outputs_without_the_batch_size_are_internal() -> None:
    async def short(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"][:-1]}

    async def test() -> None:
        with pytest.raises(errors.Internal, match=r"output 'y' has shape \[1, 1\], expected 2 items first"):
            await make(short).infer(items(1.0, 2.0))

    run(test)


def test_a_dying_loop_resolves_every_queued_request_and_the_next_one_works(monkeypatch: pytest.MonkeyPatch) -> None:
    async def test() -> None:
        model, recorder = FakeModel(held=True), Recorder()
        batcher = make(model, observer=recorder)
        first = await busy(model, batcher, 0.0)
        queued = submit(batcher, items(1.0), items(2.0), items(3.0, width=2))
        await until(lambda: batcher.queued == 3)

        def broken(*args: Any, **kwargs: Any) -> list[Any]:
            raise RuntimeError("bug in the batcher")

        monkeypatch.setattr(batcher._policy, "take", broken)
        model.gate.set()
        assert doubled(await first) == [0.0]  # the running batch is not the loop's to fail
        for task in queued:
            with pytest.raises(errors.Internal, match="model 'fake': batcher failed: RuntimeError: bug in the batcher"):
                await task
        assert recorder.drops == ["error"] * 3 and batcher.queued == 0
        monkeypatch.undo()
        assert doubled(await batcher.infer(items(5.0))) == [10.0]  # a fresh loop serves the next one

    run(test)


def test_a_failing_observer_fails_no_request() -> None:
    class Broken(Recorder):
        def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None:
            raise RuntimeError("metrics are down")

    async def test() -> None:
        batcher = make(FakeModel(), observer=Broken())
        assert doubled(await batcher.infer(items(1.0))) == [2.0]
        assert batcher.stats.success_count == 1

    run(test)


# -- shutting down -----------------------------------------------------------------------------


def test_close_with_drain_answers_everything_accepted_and_refuses_new_work() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model, max_queue_delay_us=HOUR_US, preferred_batch_sizes=(2,))
        running = submit(batcher, items(0.0), items(1.0))
        await until(lambda: len(model.batches) == 1)
        waiting = submit(batcher, items(2.0))  # alone, it would wait an hour for a partner
        await until(lambda: batcher.queued == 1)
        closing = asyncio.create_task(batcher.close(drain=True))
        await asyncio.sleep(0)
        with pytest.raises(errors.Unavailable, match="model 'fake' is shutting down"):
            await batcher.infer(items(9.0))
        model.gate.set()
        await closing
        assert [doubled(r) for r in await asyncio.gather(*running, *waiting)] == [[0.0], [2.0], [4.0]]
        assert model.batches == [[0.0, 1.0], [2.0]]

    run(test)


def test_close_without_drain_fails_the_queued_ones() -> None:
    async def test() -> None:
        model, recorder = FakeModel(held=True), Recorder()
        batcher = make(model, observer=recorder)
        first = await busy(model, batcher, 0.0)
        queued = submit(batcher, items(1.0), items(2.0))
        await until(lambda: batcher.queued == 2)
        closing = asyncio.create_task(batcher.close(drain=False))
        for task in queued:
            with pytest.raises(errors.Unavailable, match="shutting down; the request was not run"):
                await task
        model.gate.set()
        await closing
        assert doubled(await first) == [0.0]  # the running batch still completes
        assert model.batches == [[0.0]] and recorder.drops == ["shutdown", "shutdown"]

    run(test)


# -- statistics --------------------------------------------------------------------------------


def test_statistics_add_up() -> None:
    async def timed(inputs: dict[str, np.ndarray]) -> Timed:
        outputs = await model(inputs)
        return Timed(outputs, compute_seconds=0.25)  # as measured by the runtime itself

    async def test() -> None:
        batcher = make(timed, observer=recorder)
        first = await busy(model, batcher, 0.0)
        good, bad, cancelled = submit(batcher, items(1.0, 2.0), items(BAD), items(3.0))
        loop = asyncio.get_running_loop()
        expired = asyncio.create_task(batcher.infer(items(4.0), deadline=loop.time() + 0.001))
        await until(lambda: batcher.queued == 3 and expired.done())
        cancelled.cancel()
        await until(lambda: batcher.queued == 2)
        model.gate.set()
        await asyncio.gather(first, good, bad, cancelled, expired, return_exceptions=True)

        s = batcher.stats
        assert (s.request_count, s.success_count, s.fail_count, s.cancel_count) == (5, 2, 2, 1)
        # Runs: [0], then [1, 2, BAD] failed, then [1, 2] and [BAD] alone, of which [BAD] failed.
        assert s.batch_sizes == {1: (1, 250_000_000), 2: (1, 250_000_000)}
        assert s.execution_count == 2 and s.inference_count == 3 and recorder.batches == [1, 2]
        assert s.queue_count == s.compute_count == s.success_count
        assert s.compute_ns == 2 * 250_000_000  # each request is charged its batch's compute time
        assert s.success_ns >= s.queue_ns >= 0 and s.fail_ns >= 0
        assert recorder.dequeued == 3 and sorted(recorder.drops) == ["cancelled", "deadline"]

    model, recorder = FakeModel(held=True), Recorder()
    run(test)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be at least 1"),
        ({"max_queue_delay_us": -1}, "max_queue_delay_us must be 0 or more"),
        ({"preferred_batch_sizes": (4, 16)}, r"preferred_batch_sizes \[4, 16\] must lie in 1..8"),
        ({"max_queue_size": 0}, "max_queue_size must be at least 1"),
        ({"max_queue_bytes": 0}, "max_queue_bytes must be at least 1"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
    ],
)
def test_nonsense_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(FakeModel(), **options)


def test_the_default_queue_holds_eight_full_batches() -> None:
    assert make(FakeModel(), max_batch_size=16).max_queue_size == 128


def test_overdue_requests_wait_for_the_callers_of_the_batch_that_just_finished() -> None:
    """The 31 + 1 split, in small: B, C and D arrive while A runs and are overdue when it
    finishes; A's caller comes back a little later and joins them, rather than B, C and D leaving
    as three and A alone after them, for ever."""

    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model, max_batch_size=4, preferred_batch_sizes=(4,), max_queue_delay_us=500_000)
        first = await busy(model, batcher, 0.0)
        rest = submit(batcher, items(1.0), items(2.0), items(3.0))
        await until(lambda: batcher.queued == 3)
        await asyncio.sleep(0.7)  # past their delay: overdue
        model.gate.set()
        await first
        await asyncio.sleep(0.05)  # a caller's round trip
        again = await batcher.infer(items(4.0))
        await asyncio.gather(*rest)
        assert model.batches == [[0.0], [1.0, 2.0, 3.0, 4.0]] and doubled(again) == [8.0]

    run(test)


def test_callers_that_do_not_come_back_delay_the_overdue_ones_by_one_delay_at_most() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        batcher = make(model, max_batch_size=4, preferred_batch_sizes=(4,), max_queue_delay_us=50_000)
        first = await busy(model, batcher, 0.0)
        rest = submit(batcher, items(1.0), items(2.0))
        await until(lambda: batcher.queued == 2)
        await asyncio.sleep(0.1)
        model.gate.set()
        await first  # and its caller goes away
        await asyncio.wait_for(asyncio.gather(*rest), timeout=30)
        assert model.batches == [[0.0], [1.0, 2.0]]

    run(test)


def test_a_closed_loop_of_max_batch_size_callers_runs_full_batches() -> None:
    """Eight callers, each sending its next request when its reply comes, on a model whose
    maximum is eight: after the start, every batch is full."""

    async def test() -> None:
        model = FakeModel()
        batcher = make(model, max_batch_size=8, preferred_batch_sizes=(1, 8), max_queue_delay_us=100_000)

        async def caller(i: int) -> None:
            for round_ in range(6):
                assert doubled(await batcher.infer(items(float(i * 100 + round_)))) == [2.0 * (i * 100 + round_)]
                await asyncio.sleep(0.002 * i)  # round trips of different lengths

        await asyncio.wait_for(asyncio.gather(*(caller(i) for i in range(8))), timeout=60)
        assert [len(b) for b in model.batches] == [8] * 6

    run(test)


def test_a_request_that_finds_the_model_idle_goes_at_once_and_one_that_finds_it_busy_waits() -> None:
    async def test() -> None:
        model = FakeModel(held=True)
        hour = 3_600_000_000
        batcher = make(model, max_batch_size=8, max_queue_delay_us=hour, preferred_batch_sizes=(4,))
        first = asyncio.create_task(batcher.infer(items(0.0)))  # idle model: no hour-long wait
        await until(lambda: model.running == 1)
        second = asyncio.create_task(batcher.infer(items(1.0)))  # arrives while a batch runs
        await until(lambda: batcher.queued == 1)
        model.gate.set()
        await first
        for _ in range(50):  # the slot is free, but the second request waits for company
            await asyncio.sleep(0)
        assert model.batches == [[0.0]] and not second.done()
        rest = [asyncio.create_task(batcher.infer(items(v))) for v in (2.0, 3.0, 4.0)]
        await asyncio.gather(second, *rest)  # the preferred size 4 is reached: it leaves
        assert model.batches == [[0.0], [1.0, 2.0, 3.0, 4.0]]

    run(test)


# -- inline: a lone request run on the event loop's thread ----------------------------------------


@dataclass
class InlineModel:
    """The synchronous side of a model that runs lone requests inline: doubles ``x``, records
    what it ran, fails on the markers; returns None (no free instance) while ``busy``."""

    runs: list[list[float]] = field(default_factory=list)
    busy: bool = False

    def __call__(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
        if self.busy:
            return None
        x = np.concatenate([p["x"] for p in parts])
        self.runs.append(x[:, 0].tolist())
        if (x == BAD).any():
            raise errors.InvalidArgument("input 'x': bad item")
        if (x == BOOM).any():
            raise ValueError("model exploded")
        return {"y": x * 2, "n": np.arange(len(x))}


def test_a_lone_request_runs_inline_with_the_same_outputs_and_accounting() -> None:
    async def test() -> None:
        threaded, inline, recorder = FakeModel(), InlineModel(), Recorder()
        batcher = make(threaded, max_queue_delay_us=HOUR_US, run_inline=inline, observer=recorder)
        reference = make(FakeModel(), max_queue_delay_us=HOUR_US)
        got = await batcher.infer(items(1.5, 2.5))
        want = await reference.infer(items(1.5, 2.5))
        assert inline.runs == [[1.5, 2.5]] and threaded.batches == []
        assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in want.items()}
        s = batcher.stats  # counted as it returns: an inline request has no future, no callback
        assert (s.request_count, s.success_count, s.execution_count, s.inference_count) == (1, 1, 1, 2)
        assert list(s.batch_sizes) == [2] and recorder.batches == [2] and recorder.dequeued == 1

    run(test)


def test_a_request_that_finds_the_model_busy_is_never_run_inline() -> None:
    async def test() -> None:
        threaded, inline = FakeModel(held=True), InlineModel(busy=True)
        batcher = make(threaded, max_queue_delay_us=HOUR_US, preferred_batch_sizes=(2,), run_inline=inline)
        first = await busy(threaded, batcher, 0.0)  # no free instance inline: queued, computing
        inline.busy = False
        second = submit(batcher, items(1.0), items(2.0))  # they find it busy: they queue
        await until(lambda: batcher.queued == 2)
        threaded.gate.set()
        await asyncio.gather(first, *second)
        assert inline.runs == [] and threaded.batches == [[0.0], [1.0, 2.0]]

    run(test)


def test_an_inline_failure_fails_its_request_alone() -> None:
    async def test() -> None:
        inline = InlineModel()
        batcher = make(FakeModel(held=True), run_inline=inline, lone_gap=0.0)  # held: every run must be inline
        with pytest.raises(errors.InvalidArgument, match="bad item"):
            await batcher.infer(items(BAD))
        with pytest.raises(errors.Internal, match="inference failed: ValueError: model exploded"):
            await batcher.infer(items(BOOM))
        assert doubled(await batcher.infer(items(3.0))) == [6.0]
        s = batcher.stats
        assert (s.request_count, s.fail_count, s.success_count, s.execution_count) == (3, 2, 1, 1)

    run(test)


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "threaded"])
def test_deadlines_draining_and_cancellation_are_the_same_on_both_paths(inline: bool) -> None:
    async def test() -> None:
        threaded, lone = FakeModel(), InlineModel()
        batcher = make(threaded, run_inline=lone if inline else None)
        loop = asyncio.get_running_loop()
        with pytest.raises(errors.DeadlineExceeded, match="deadline passed before the request was queued"):
            await batcher.infer(items(1.0), deadline=loop.time() - 1)
        cancelled = asyncio.create_task(batcher.infer(items(2.0)))
        cancelled.cancel()  # before it ever ran
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert doubled(await batcher.infer(items(3.0), deadline=loop.time() + 60)) == [6.0]
        await batcher.close()
        with pytest.raises(errors.Unavailable, match="shutting down"):
            await batcher.infer(items(4.0))
        # Only the request with a live deadline ran, on the path chosen, and was counted alike.
        assert (lone.runs, threaded.batches) == (([[3.0]], []) if inline else ([], [[3.0]]))
        await asyncio.sleep(0)  # the threaded path counts in its future's done callback
        s = batcher.stats
        assert (s.request_count, s.success_count, s.fail_count, s.cancel_count) == (1, 1, 0, 0)

    run(test)


def test_a_request_with_company_on_its_way_is_not_run_inline() -> None:
    """Others in flight for the model (still decoding, say) should share its run, not each run alone."""

    async def test() -> None:
        threaded, inline = FakeModel(), InlineModel()
        others = {"in flight": 2}
        batcher = make(threaded, run_inline=inline, alone=lambda: others["in flight"] <= 1)
        assert doubled(await batcher.infer(items(1.0))) == [2.0]
        others["in flight"] = 1
        await asyncio.sleep(0.01)  # the first batch's task has left the batcher
        assert doubled(await batcher.infer(items(2.0))) == [4.0]
        assert threaded.batches == [[1.0]] and inline.runs == [[2.0]]

    run(test)


def test_a_request_right_behind_the_last_run_is_a_crowd_not_a_lone_caller() -> None:
    async def test() -> None:
        threaded, inline = FakeModel(), InlineModel()
        batcher = make(threaded, run_inline=inline, lone_gap=3600.0)
        assert doubled(await batcher.infer(items(1.0))) == [2.0]  # nothing ran before: lone
        assert doubled(await batcher.infer(items(2.0))) == [4.0]  # within the gap: a crowd's
        assert inline.runs == [[1.0]] and threaded.batches == [[2.0]]

    run(test)
