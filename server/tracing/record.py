"""One traced request: its stages' timestamps by Triton's names, the batch it rode in, and who
served it. Made only for sampled requests: the hot path of the rest checks one attribute."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

# Triton's timestamp names, in the order a request meets them.
REQUEST_START = "REQUEST_START"
QUEUE_START = "QUEUE_START"
COMPUTE_START = "COMPUTE_START"
COMPUTE_INPUT_END = "COMPUTE_INPUT_END"
COMPUTE_OUTPUT_START = "COMPUTE_OUTPUT_START"
COMPUTE_END = "COMPUTE_END"
REQUEST_END = "REQUEST_END"
ORDER = (REQUEST_START, QUEUE_START, COMPUTE_START, COMPUTE_INPUT_END, COMPUTE_OUTPUT_START, COMPUTE_END,
         REQUEST_END)  # fmt: skip

_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class Batch:
    """One run of a model that traced requests rode in: shared by them, stamped once."""

    id: int
    size: int  # items in the run
    requests: int
    instance: int = 0
    stamps: list[tuple[str, int]] = field(default_factory=list)

    def stamp(self, name: str, ns: int | None = None) -> None:
        self.stamps.append((name, time.monotonic_ns() if ns is None else ns))


@dataclass(eq=False, slots=True)
class Trace:
    model: str
    version: str
    protocol: str  # "grpc" or "http" for V2 ModelInfer; "" where the caller does not say (Classify, Policy)
    request_id: str = ""
    id: int = field(default_factory=lambda: next(_ids))
    stamps: list[tuple[str, int]] = field(default_factory=list)
    batch: Batch | None = None
    position: int = 0  # the request's first item in its batch

    def stamp(self, name: str, ns: int | None = None) -> None:
        self.stamps.append((name, time.monotonic_ns() if ns is None else ns))

    def timestamps(self) -> list[tuple[str, int]]:
        """Every stamp, the batch's with the request's, in time order."""
        shared = self.batch.stamps if self.batch is not None else []
        return sorted([*self.stamps, *shared], key=lambda s: s[1])
