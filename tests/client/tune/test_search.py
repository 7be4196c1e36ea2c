"""The goal (constraints and objective) and the walk through the space, on made-up measurements:
what is chosen, and that the quick search finds the best point without measuring every one."""

from __future__ import annotations

import math
import time

import pytest

from cnnserve.client.tune.results import Measured
from cnnserve.client.tune.search import Goal, Walk
from cnnserve.client.tune.space import Point, Space
from cnnserve.client.tune.sweep import Level

SPACE = Space(max_batch_size=(1, 2, 4, 8, 16, 32, 64), preferred=("export", "max", "none"),
              max_queue_delay_us=(0, 1000, 2000, 5000), instances=(1, 2), workers=(1,), intra_op_threads=(0,),
              batch_shapes=("auto",), cores=2)  # fmt: skip
START = Point(64, "export", 5000, 1, 1, 0, "auto")


def level(concurrency: int, rate: float, p99: float, failed: int = 0) -> Level:
    return Level(concurrency, 100, failed, 1.0, rate, p99 / 2, p99 * 0.9, p99, 0.1, 0.2, 1.0,
                 "RESOURCE_EXHAUSTED: queue full" if failed else "")  # fmt: skip


def made_up(point: Point) -> Measured:
    """A landscape with one best point: batch 16, delay 1000 us, preferred max, two instances;
    latency grows with the batch and the delay."""
    score = 1000 - 40 * abs(math.log2(point.max_batch_size) - 4) - abs(point.max_queue_delay_us - 1000) / 50
    score += 30 * (point.preferred == "max") + 20 * (point.instances == 2)
    p99 = 2 + point.max_batch_size / 4 + point.max_queue_delay_us / 1000
    return Measured("m", point, (level(1, score / 2, p99 / 2), level(8, score, p99), level(16, score * 0.98, p99 * 2)))


def test_constraints_pick_the_best_level_that_meets_them() -> None:
    measured = Measured("m", START, (level(1, 100, 5), level(4, 300, 20), level(8, 350, 60), level(16, 400, 9, 3)))
    goal = Goal(budget_ms=50)
    assert goal.best_level(measured) == measured.levels[1]  # 8 callers break the budget, 16 fail
    assert goal.why_not(measured, measured.levels[2]) == "p99 60.0 ms over the 50 ms budget"
    assert goal.why_not(measured, measured.levels[3]) == "3 requests failed (RESOURCE_EXHAUSTED: queue full)"
    assert Goal().best_level(measured) == measured.levels[2]  # no budget: the most throughput that succeeded
    assert Goal(budget_ms=1).best_level(measured) is None
    assert Goal(budget_ms=50, min_throughput=320).best_level(measured) is None
    latency = Goal(objective="latency", min_throughput=250)
    assert latency.best_level(measured) == measured.levels[1]  # the lowest p99 that serves 250/s
    memory = Measured("m", START, measured.levels, gpu_memory_mib=3000)
    assert Goal(max_gpu_memory_mib=2000).why_not(memory, memory.levels[0]) == (
        "3,000 MiB of GPU memory over the 2000 MiB limit")


def test_points_that_meet_nothing_rank_by_latency_below_those_that_meet() -> None:
    goal = Goal(budget_ms=10)
    near = Measured("m", START, (level(1, 10, 12),))
    far = Measured("m", START, (level(1, 900, 40),))
    meets = Measured("m", START, (level(1, 5, 9),))
    assert goal.rank(meets) > goal.rank(near) > goal.rank(far)
    assert goal.chosen([near, far]) is None and goal.chosen([near, meets, far]) is meets
    assert goal.rank(Measured("m", START, failed="the server did not start")) == (0, -math.inf)


def test_quick_search_climbs_to_the_best_point_measuring_few() -> None:
    calls: list[Point] = []

    def measure(point: Point) -> Measured:
        calls.append(point)
        return made_up(point)

    walk = Walk(SPACE.with_start(START), Goal(budget_ms=100), measure)
    measured = walk.run("quick", START)
    assert measured[0].point == START and len(calls) == len(set(calls)) == len(measured)  # never twice
    best = Goal(budget_ms=100).chosen(measured)
    assert best is not None and best.point == Point(16, "max", 1000, 2, 1, 0, "auto")
    assert len(measured) < SPACE.size() / 3
    # brute force measures every point, and agrees
    everything = Walk(SPACE, Goal(budget_ms=100), made_up).run("brute", START)
    assert len(everything) == SPACE.size()
    assert Goal(budget_ms=100).chosen(everything).point == best.point  # type: ignore[union-attr]


def test_the_deadline_stops_the_search_after_the_start() -> None:
    walk = Walk(SPACE, Goal(), made_up, deadline=time.monotonic() - 1)
    assert [m.point for m in walk.run("brute", START)] == [START] and walk.out_of_time


def test_ctrl_c_keeps_what_was_measured() -> None:
    seen: list[Point] = []

    def measure(point: Point) -> Measured:
        if len(seen) == 3:
            raise KeyboardInterrupt
        seen.append(point)
        return made_up(point)

    walk = Walk(SPACE, Goal(), measure)
    assert [m.point for m in walk.run("quick", START)] == seen and walk.interrupted


@pytest.mark.parametrize("objective", ["throughput", "latency"])
def test_objectives_order_points(objective: str) -> None:
    fast = Measured("m", START, (level(4, 500, 30),))
    quick = Measured("m", START, (level(4, 300, 5),))
    goal = Goal(objective=objective, min_throughput=100)
    assert goal.chosen([fast, quick]) is (fast if objective == "throughput" else quick)
