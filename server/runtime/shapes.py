"""Which batch shapes a model's sessions run: decided once, read by the batcher (where a batch
is cut) and by the runner (how it is padded and which session runs it).

- ``exact``: every batch runs at its own size. The CPU's choice: a padded item costs as much
  compute as a real one, and the CPU provider keeps no per-shape plan to rebuild.
- ``padded``: a batch is zero-padded to the smallest *bucket* that holds it (the preferred batch
  sizes and ``max_batch_size``), and every bucket has sessions of its own, so that no session ever
  sees a second input shape. The CUDA provider's choice: with cuDNN 9, ONNX Runtime's Conv keeps
  the plan of the last input shape only and rebuilds it whenever the shape changes, so one session
  fed batches of 1 and 32 in turn pays a rebuild on every run, warm-up or not.
- ``auto``: ``padded`` on CUDA, ``exact`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cnnserve.server.runtime.devices import CUDA
from cnnserve.server.settings import BATCH_SHAPES as POLICIES


@dataclass(frozen=True)
class BatchShapes:
    policy: str  # "exact" or "padded": what "auto" resolved to
    max_batch_size: int
    preferred: tuple[int, ...]  # ascending, where a batch leaving on size is cut
    buckets: tuple[int, ...]  # ascending, ending at max_batch_size; () when exact

    @classmethod
    def decide(cls, policy: str, provider: str, max_batch_size: int, preferred: Iterable[int]) -> BatchShapes:
        if policy not in POLICIES:
            raise ValueError(f"batch shapes {policy!r}: expected one of {', '.join(POLICIES)}")
        if policy == "auto":
            policy = "padded" if provider == CUDA else "exact"
        sizes = tuple(sorted({min(size, max_batch_size) for size in preferred}))
        buckets = tuple(sorted({*sizes, max_batch_size})) if policy == "padded" else ()
        return cls(policy, max_batch_size, sizes, buckets)

    def padded(self, batch: int) -> int:
        """The size a batch of ``batch`` items runs at."""
        return next((size for size in self.buckets if size >= batch), batch)

    def label(self) -> str:
        """For cnnserve_model_info: "exact", or the padded sizes, e.g. "1,8,32"."""
        return ",".join(map(str, self.buckets)) if self.buckets else "exact"

    def describe(self) -> str:
        if not self.buckets:
            return "exact batch sizes"
        return f"padded to {list(self.buckets)}, one session per size"
