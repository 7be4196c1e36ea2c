"""The settings ``cnnserve tune`` sweeps, and the points of that space.

A point is one server configuration for one model: the batching fields of its config.json
(``max_batch_size``, the preferred sizes, the queue delay, the instance count) and the server's
process settings (workers, ONNX Runtime's intra-op threads, batch shapes on CUDA). Each dimension
is an ordered list of values; the quick search steps one value along one dimension at a time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

PREFERRED = ("export", "max", "none")
"""How a point chooses its preferred batch sizes: export's own (clamped to the point's maximum),
the maximum alone, or none (a batch leaves on the queue delay or when full)."""


@dataclass(frozen=True)
class Point:
    max_batch_size: int
    preferred: str  # one of PREFERRED
    max_queue_delay_us: int
    instances: int
    workers: int
    intra_op_threads: int  # per worker; 0: ONNX Runtime's default (one per physical core)
    batch_shapes: str  # "exact" or "padded" ("auto" where the device gives no choice)

    def key(self) -> str:
        """The point's identity in the results file."""
        return json.dumps(asdict(self), sort_keys=True)

    def preferred_sizes(self, export_preferred: Sequence[int]) -> tuple[int, ...]:
        if self.preferred == "none":
            return ()
        if self.preferred == "max":
            return (self.max_batch_size,)
        return tuple(sorted({min(b, self.max_batch_size) for b in export_preferred}))

    def server_flags(self, export_preferred: Sequence[int]) -> list[str]:
        """``cnnserve serve`` flags that run the model at this point."""
        sizes = self.preferred_sizes(export_preferred)
        flags = ["--max-batch-size", str(self.max_batch_size),
                 "--preferred-batch-sizes", ",".join(map(str, sizes)) or "none",
                 "--max-queue-delay-us", str(self.max_queue_delay_us),
                 "--instances", str(self.instances), "--workers", str(self.workers),
                 "--intra-op-threads", str(self.intra_op_threads)]  # fmt: skip
        if self.batch_shapes != "auto":
            flags += ["--batch-shapes", self.batch_shapes]
        return flags

    def process_flags(self) -> list[str]:
        """The flags a config.json cannot carry: they are the server process's, for every model."""
        flags = ["--workers", str(self.workers)]
        if self.intra_op_threads:
            flags += ["--intra-op-threads", str(self.intra_op_threads)]
        if self.batch_shapes != "auto":
            flags += ["--batch-shapes", self.batch_shapes]
        return flags

    def describe(self, export_preferred: Sequence[int]) -> str:
        sizes = self.preferred_sizes(export_preferred)
        threads = "default" if self.intra_op_threads == 0 else str(self.intra_op_threads)
        text = (f"max batch {self.max_batch_size}, preferred {list(sizes) if sizes else 'none'}, "
                f"delay {self.max_queue_delay_us} us, {self.instances} inst, {self.workers} worker"
                f"{'s' if self.workers > 1 else ''}, threads {threads}")  # fmt: skip
        return text + (f", {self.batch_shapes}" if self.batch_shapes != "auto" else "")


DIMENSIONS = tuple(Point.__dataclass_fields__)


@dataclass(frozen=True)
class Space:
    """The values each dimension may take, in order, and the cores that bound workers x threads."""

    max_batch_size: tuple[int, ...]
    preferred: tuple[str, ...]
    max_queue_delay_us: tuple[int, ...]
    instances: tuple[int, ...]
    workers: tuple[int, ...]
    intra_op_threads: tuple[int, ...]
    batch_shapes: tuple[str, ...]
    cores: int

    def values(self, dimension: str) -> tuple[object, ...]:
        values: tuple[object, ...] = getattr(self, dimension)
        return values

    def allows(self, point: Point) -> bool:
        """Within the space, and no more threads than cores: workers each running more intra-op
        threads than their share only fight over the cores."""
        inside = all(getattr(point, d) in self.values(d) for d in DIMENSIONS)
        return inside and point.workers * max(point.intra_op_threads, 1) <= self.cores

    def size(self) -> int:
        return sum(1 for _ in self.points())

    def points(self) -> Iterator[Point]:
        """Every point of the space (the brute-force search's order)."""
        for values in itertools.product(*(self.values(d) for d in DIMENSIONS)):
            point = Point(*values)  # type: ignore[arg-type]
            if self.allows(point):
                yield point

    def neighbours(self, point: Point) -> list[Point]:
        """The points one step away along one dimension: the next value up and down in each
        ordered dimension, every other choice of preferred sizes and batch shapes."""
        found = []
        for dimension in DIMENSIONS:
            values = self.values(dimension)
            here = getattr(point, dimension)
            if dimension in ("preferred", "batch_shapes"):
                steps = [v for v in values if v != here]
            else:  # every point the search meets is in the space: see with_start
                i = values.index(here)
                steps = [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]
            for value in steps:
                candidate = replace(point, **{dimension: value})  # type: ignore[arg-type]
                if self.allows(candidate):
                    found.append(candidate)
        return found

    def with_start(self, start: Point) -> Space:
        """The space with the start's own values added, so that export's default is a point of it."""
        grown = {}
        for dimension in DIMENSIONS:
            values = self.values(dimension)
            here = getattr(start, dimension)
            if here not in values:
                values = tuple(sorted((*values, here))) if dimension not in ("preferred", "batch_shapes") else (
                    here, *values)  # fmt: skip
            grown[dimension] = values
        return replace(self, **grown)  # type: ignore[arg-type]


def powers_of_two(low: int, high: int) -> tuple[int, ...]:
    return tuple(2**i for i in range(64) if low <= 2**i <= high)
