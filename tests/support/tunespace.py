"""The tiny space the tests of ``cnnserve tune`` sweep: a few seconds a run."""

from __future__ import annotations

import itertools


def tiny(**changes: str) -> list[str]:
    """Two points: export's default (a 2000 us delay) and the same without a queue delay; two
    loads each. ``changes``: other values, as ``queue_delays_us="2000"``."""
    flags = {"max_batch_sizes": "256", "preferred": "export", "queue_delays_us": "0,2000", "instances": "1",
             "workers": "1", "intra_op_threads": "0", "concurrency": "1,2", "seconds": "0.5", "warmup": "0.2",
             "search": "brute", "device": "cpu"} | changes  # fmt: skip
    return [*itertools.chain.from_iterable(("--" + k.replace("_", "-"), v) for k, v in flags.items()), "--no-progress"]
