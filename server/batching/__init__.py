"""Dynamic batching, in its parts: the batcher (:mod:`.batcher`), its queue and limits
(:mod:`.queue`), when a batch leaves (:mod:`.policy`), the inline path for a lone request
(:mod:`.inline`), and what is counted and reported (:mod:`.stats`)."""

from cnnserve.server.batching.batcher import DynamicBatcher
from cnnserve.server.batching.stats import BatcherStats, BatchObserver

__all__ = ["BatchObserver", "BatcherStats", "DynamicBatcher"]
