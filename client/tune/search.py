"""What "best" means (Model Analyzer's constraints and objectives), and the walk through the space
that finds it without measuring every point."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from cnnserve.client.tune.results import Measured
from cnnserve.client.tune.space import Point, Space
from cnnserve.client.tune.sweep import Level

SEARCHES = ("quick", "brute")
OBJECTIVES = ("throughput", "latency")


@dataclass(frozen=True)
class Goal:
    """The constraints a level must meet and what is made best among those that do:
    ``throughput`` (the most items a second) or ``latency`` (the lowest percentile latency)."""

    objective: str = "throughput"
    budget_ms: float | None = None  # on the percentile's latency (perf_latency_p99)
    percentile: int = 99
    min_throughput: float | None = None  # items a second (perf_throughput)
    max_gpu_memory_mib: float | None = None  # gpu_used_memory

    def why_not(self, measured: Measured, level: Level) -> str:
        """Why ``level`` of ``measured`` does not meet the constraints; "" when it does."""
        if level.failed or not level.requests:
            return f"{level.failed} requests failed ({level.error})" if level.failed else "no request succeeded"
        latency = level.latency_ms(self.percentile)
        if self.budget_ms is not None and not latency <= self.budget_ms:
            return f"p{self.percentile} {latency:.1f} ms over the {self.budget_ms:g} ms budget"
        if self.min_throughput is not None and level.items_per_second < self.min_throughput:
            return f"{level.items_per_second:,.1f}/s under the {self.min_throughput:g}/s minimum"
        memory = measured.gpu_memory_mib
        if self.max_gpu_memory_mib is not None and memory is not None and memory > self.max_gpu_memory_mib:
            return f"{memory:,.0f} MiB of GPU memory over the {self.max_gpu_memory_mib:g} MiB limit"
        return ""

    def best_level(self, measured: Measured) -> Level | None:
        """The point's best level among those that meet the constraints; None if none does."""
        meeting = [level for level in measured.levels if not self.why_not(measured, level)]
        if not meeting:
            return None
        if self.objective == "latency":
            return min(meeting, key=lambda level: level.latency_ms(self.percentile))
        return max(meeting, key=lambda level: level.items_per_second)

    def rank(self, measured: Measured) -> tuple[int, float]:
        """Larger is better: points that meet the constraints before those that do not, then the
        objective; a point that meets nothing ranks by its lowest latency, so that a search from
        a start over the budget still walks towards it."""
        level = self.best_level(measured)
        if level is not None:
            value = level.items_per_second if self.objective == "throughput" else -level.latency_ms(self.percentile)
            return 1, value
        latencies = [lv.latency_ms(self.percentile) for lv in measured.levels if lv.requests and not lv.failed]
        return 0, -min(latencies) if latencies else -math.inf

    def chosen(self, measured: list[Measured]) -> Measured | None:
        """The best point measured, None if no level of any meets the constraints."""
        meeting = [m for m in measured if self.best_level(m) is not None]
        return max(meeting, key=self.rank) if meeting else None


class OutOfTime(Exception):
    pass


class Walk:
    """The search over one model's space. ``measure(point)`` measures a point, or returns what
    the results file holds for it."""

    def __init__(self, space: Space, goal: Goal, measure: Callable[[Point], Measured],
                 deadline: float = math.inf) -> None:  # fmt: skip
        self.space, self.goal, self.measure, self.deadline = space, goal, measure, deadline
        self.measured: dict[Point, Measured] = {}
        self.out_of_time = False
        self.interrupted = False  # Ctrl-C: the points measured until then are kept

    def _at(self, point: Point, *, first: bool = False) -> Measured:
        if point not in self.measured:
            if time.monotonic() >= self.deadline and not first:  # the start is what the rest is measured against
                self.out_of_time = True
                raise OutOfTime
            self.measured[point] = self.measure(point)
        return self.measured[point]

    def run(self, search: str, start: Point) -> list[Measured]:
        """Every point measured (or read back), in order; the start always first."""
        try:
            self._at(start, first=True)
            if search == "brute":
                for point in self.space.points():
                    self._at(point)
            else:
                self._climb(start)
        except OutOfTime:
            pass
        except KeyboardInterrupt:
            self.interrupted = True
        return list(self.measured.values())

    def _climb(self, current: Point) -> None:
        """Model Analyzer's quick search, as hill climbing: measure every neighbour of the current
        point (one step along one dimension), move to the best if it beats the current one, and
        stop where none does."""
        while True:
            for point in self.space.neighbours(current):
                self._at(point)
            around = [current, *self.space.neighbours(current)]
            best = max(around, key=lambda p: self.goal.rank(self.measured[p]))
            if self.goal.rank(self.measured[best]) <= self.goal.rank(self.measured[current]):
                return
            current = best
