"""The dynamic batcher, driven with a fake model whose runs can be held at a gate.

Nothing here asserts on time: situations (a busy model, a queue that fills) are made with gates
and events, and the assertions are about which requests shared which batch and what each got.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from server import errors
from server.batching import DynamicBatcher

POISON = -1.0  # a request containing this value makes the fake model fail


@dataclass
class Result:
    outputs: dict[str, np.ndarray]
    compute_seconds: float = 0.001


@dataclass
class FakeModel:
    """Doubles its input; records every batch it ran; can be held at a gate."""

    batches: list[list[float]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    running: int = 0
    most_running: int = 0
    wrong_size: bool = False

    async def __call__(self, inputs: dict[str, np.ndarray]) -> Result:
        x = inputs["x"]
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            self.batches.append(x[:, 0].tolist())
            if (x == POISON).any():
                raise ValueError("poisoned input")
            y = x * 2
            return Result({"y": y[:-1] if self.wrong_size else y})
        finally:
            self.running -= 1


def items(*values: float, width: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.array([[v] * width for v in values], dtype=np.float32)}


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), timeout=30))  # a safety net, not a timing


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def make(model: FakeModel, **kw: Any) -> DynamicBatcher:
    options = {"max_batch_size": 8, "max_queue_delay_us": 100_000, "preferred_batch_sizes": (4,)} | kw
    return DynamicBatcher("fake", model, **options)


def test_a_lone_request_leaves_after_the_delay() -> None:
    async def test() -> None:
        model = FakeModel()
        batcher = make(model, max_queue_delay_us=1000)
        out = await batcher.infer(items(3.0))
        np.testing.assert_array_equal(out["y"], [[6.0]])
        assert model.batches == [[3.0]]

    run(test)


def test_concurrent_requests_join_one_batch_and_split_back_exactly() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, preferred_batch_sizes=())
        first = asyncio.create_task(batcher.infer(items(1.0)))
        await model.started.wait()  # the model is busy with the first request
        rest = [asyncio.create_task(batcher.infer(items(*vals))) for vals in ([2.0, 3.0], [4.0], [5.0, 6.0, 7.0])]
        await until(lambda: batcher.queued == 3)
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        assert model.batches == [[1.0], [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
        assert [r["y"][:, 0].tolist() for r in results] == [[2.0], [4.0, 6.0], [8.0], [10.0, 12.0, 14.0]]
        assert batcher.stats.execution_count == 2 and batcher.stats.inference_count == 7
        assert batcher.stats.batch_sizes[6][0] == 1

    run(test)


def test_max_batch_size_is_respected_and_requests_are_never_split() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, max_batch_size=4, preferred_batch_sizes=())
        first = asyncio.create_task(batcher.infer(items(0.0)))
        await model.started.wait()
        rest = [asyncio.create_task(batcher.infer(items(*v))) for v in ([1, 1, 1], [2, 2], [3], [4, 4, 4, 4])]
        await until(lambda: batcher.queued == 4)
        model.gate.set()
        await asyncio.gather(first, *rest)
        assert model.batches == [[0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 3.0], [4.0, 4.0, 4.0, 4.0]]

    run(test)


def test_a_batch_leaves_early_at_the_preferred_size() -> None:
    async def test() -> None:
        model = FakeModel()
        batcher = make(model, max_queue_delay_us=3_600_000_000)  # an hour: only the size can dispatch
        results = await asyncio.gather(*(batcher.infer(items(float(i))) for i in range(4)))
        assert model.batches == [[0.0, 1.0, 2.0, 3.0]]
        assert len(results) == 4

    run(test)


def test_different_item_shapes_never_share_a_batch() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, preferred_batch_sizes=())
        first = asyncio.create_task(batcher.infer(items(0.0)))
        await model.started.wait()
        narrow = [asyncio.create_task(batcher.infer(items(1.0))) for _ in range(2)]
        wide = [asyncio.create_task(batcher.infer(items(2.0, width=3))) for _ in range(2)]
        await until(lambda: batcher.queued == 4)
        model.gate.set()
        await asyncio.gather(first, *narrow, *wide)
        assert sorted(model.batches) == [[0.0], [1.0, 1.0], [2.0, 2.0]]

    run(test)


def test_a_full_queue_refuses_at_once() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, max_queue_size=2)
        first = asyncio.create_task(batcher.infer(items(0.0)))
        await model.started.wait()
        queued = [asyncio.create_task(batcher.infer(items(1.0))) for _ in range(2)]
        await until(lambda: batcher.queued == 2)
        with pytest.raises(errors.ResourceExhausted, match=r"model 'fake': queue full \(2 requests waiting\)"):
            await batcher.infer(items(9.0))
        model.gate.set()
        await asyncio.gather(first, *queued)
        assert [9.0] not in model.batches

    run(test)


def test_requests_past_their_deadline_or_cancelled_are_never_computed() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, preferred_batch_sizes=())
        first = asyncio.create_task(batcher.infer(items(0.0)))
        await model.started.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.05
        expired = asyncio.create_task(batcher.infer(items(7.0), deadline=deadline))
        cancelled = asyncio.create_task(batcher.infer(items(8.0)))
        alive = asyncio.create_task(batcher.infer(items(1.0)))
        await until(lambda: batcher.queued == 3)
        cancelled.cancel()
        await until(lambda: loop.time() > deadline)  # it expires while the model is busy
        model.gate.set()
        await first
        with pytest.raises(errors.DeadlineExceeded, match="deadline passed while queued"):
            await expired
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        np.testing.assert_array_equal((await alive)["y"], [[2.0]])
        assert model.batches == [[0.0], [1.0]]

    run(test)


def test_a_failing_request_fails_alone() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, preferred_batch_sizes=())
        first = asyncio.create_task(batcher.infer(items(0.0)))
        await model.started.wait()
        good = [asyncio.create_task(batcher.infer(items(float(v)))) for v in (1, 2)]
        bad = asyncio.create_task(batcher.infer(items(POISON)))
        more = asyncio.create_task(batcher.infer(items(3.0)))
        await until(lambda: batcher.queued == 4)
        model.gate.set()
        await first
        assert [(await g)["y"][0, 0] for g in good] == [2.0, 4.0]
        np.testing.assert_array_equal((await more)["y"], [[6.0]])
        with pytest.raises(errors.Internal, match="inference failed: ValueError: poisoned input"):
            await bad
        # The whole batch ran once, failed, then each request alone.
        assert model.batches[1] == [1.0, 2.0, POISON, 3.0]
        assert sorted(model.batches[2:]) == sorted([[1.0], [2.0], [POISON], [3.0]])
        assert batcher.stats.fail_count == 1 and batcher.stats.success_count == 4

    run(test)


def test_wrong_output_size_is_an_internal_error() -> None:
    async def test() -> None:
        batcher = make(FakeModel(wrong_size=True), max_queue_delay_us=0)
        with pytest.raises(errors.Internal, match=r"output 'y' has shape \(0, 1\), batch is 1"):
            await batcher.infer(items(1.0))

    run(test)


def test_oversized_and_empty_requests_are_refused() -> None:
    async def test() -> None:
        batcher = make(FakeModel(), max_batch_size=2)
        with pytest.raises(errors.InvalidArgument, match="batch of 3 exceeds max_batch_size 2"):
            await batcher.infer(items(1.0, 2.0, 3.0))
        with pytest.raises(errors.InvalidArgument, match="same batch size of at least 1"):
            await batcher.infer({"x": np.zeros((0, 1), np.float32)})

    run(test)


def test_a_dying_loop_resolves_every_queued_request_and_the_next_one_works(monkeypatch: pytest.MonkeyPatch) -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, preferred_batch_sizes=())
        first = asyncio.create_task(batcher.infer(items(0.0)))
        await model.started.wait()
        queued = [asyncio.create_task(batcher.infer(items(1.0))) for _ in range(3)]
        await until(lambda: batcher.queued == 3)

        def broken() -> None:
            raise RuntimeError("bug in the batcher")

        monkeypatch.setattr(batcher, "_drop_dead", broken)
        model.gate.set()
        await first
        for task in queued:
            with pytest.raises(errors.Internal, match="batcher failed: RuntimeError: bug in the batcher"):
                await task
        monkeypatch.undo()
        np.testing.assert_array_equal((await batcher.infer(items(5.0)))["y"], [[10.0]])

    run(test)


def test_close_with_drain_answers_everything_accepted_and_refuses_new_work() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model)
        accepted = [asyncio.create_task(batcher.infer(items(float(i)))) for i in range(3)]
        await model.started.wait()
        closing = asyncio.create_task(batcher.close(drain=True))
        await asyncio.sleep(0)
        with pytest.raises(errors.Unavailable, match="shutting down"):
            await batcher.infer(items(9.0))
        model.gate.set()
        await closing
        assert [r["y"][0, 0] for r in await asyncio.gather(*accepted)] == [0.0, 2.0, 4.0]

    run(test)


def test_close_without_drain_fails_the_queued_ones() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, preferred_batch_sizes=())
        first = asyncio.create_task(batcher.infer(items(0.0)))
        await model.started.wait()
        queued = asyncio.create_task(batcher.infer(items(1.0)))
        await until(lambda: batcher.queued == 1)
        closing = asyncio.create_task(batcher.close(drain=False))
        with pytest.raises(errors.Unavailable):
            await queued
        model.gate.set()
        await closing
        await first  # the running batch still completes

    run(test)


def test_concurrency_two_runs_two_batches_at_once() -> None:
    async def test() -> None:
        model = FakeModel(gate=asyncio.Event())
        batcher = make(model, concurrency=2, max_queue_delay_us=0)
        a = asyncio.create_task(batcher.infer(items(1.0)))
        await until(lambda: model.running == 1)
        b = asyncio.create_task(batcher.infer(items(2.0, width=2)))
        await until(lambda: model.running == 2)
        model.gate.set()
        await asyncio.gather(a, b)
        assert model.most_running == 2

    run(test)
