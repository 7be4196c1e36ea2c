"""What the front ends report about a model's use, in Triton's JSON shape, protocol-agnostic: its
statistics (ModelStatistics over gRPC, ``.../stats`` over HTTP). Its configuration in Triton's
shape (``.../config`` over HTTP) is the repository format's own: ``cnnserve.repository``."""

from __future__ import annotations

from typing import Any

from cnnserve.server.model_manager import ServedModel


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def statistics(model: ServedModel) -> dict[str, Any]:
    """Triton's ``ModelStatistics`` of ``model``, with the batcher's counts (see BatcherStats)."""
    report: dict[str, Any] = {"name": model.name, "version": str(model.version)}
    stats = model.batcher.stats if model.batcher else None
    if stats is None:
        return report
    return report | {
        "last_inference": model.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success_count, stats.success_ns),
            "fail": _duration(stats.fail_count, stats.fail_ns),
            "queue": _duration(stats.queue_count, stats.queue_ns),
            "compute_infer": _duration(stats.compute_count, stats.compute_ns),
        },
        "batch_stats": [
            {"batch_size": size, "compute_infer": _duration(count, ns)}
            for size, (count, ns) in sorted(stats.batch_sizes.items())
        ],
    }
