"""Which requests are traced: one in ``rate`` of each model's (Triton's counting), while its
``count`` lasts; a request that brings a W3C ``traceparent`` always is."""

from __future__ import annotations

from cnnserve.server.tracing.config import TraceTable


class Sampler:
    def __init__(self, table: TraceTable) -> None:
        self.table = table
        self._seen: dict[str, int] = {}  # model -> requests since its last trace
        self._left: dict[str, int] = {}  # model -> traces left, while its count is not -1

    def take(self, model: str, *, propagated: bool = False) -> bool:
        """Whether this request of ``model`` is traced; counts it."""
        settings = self.table.of(model)
        if settings.level == "OFF":
            return False
        if propagated:  # the caller's trace continues, whatever the rate and count (Triton's rule)
            return True
        left = self._left.setdefault(model, settings.count)
        if left == 0:
            return False
        seen = self._seen.get(model, 0) + 1
        sampled = settings.rate > 0 and seen >= settings.rate
        self._seen[model] = 0 if sampled else seen
        if sampled and left > 0:
            self._left[model] = left - 1
        return sampled

    def reset(self, model: str = "") -> None:
        """After a settings change: counting starts again (a new count is the traces left)."""
        if model:
            self._seen.pop(model, None)
            self._left.pop(model, None)
        else:
            self._seen.clear()
            self._left.clear()
