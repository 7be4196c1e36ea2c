"""What the front ends report about a model, in Triton's JSON shapes, protocol-agnostic: its
statistics (ModelStatistics over gRPC, ``.../stats`` over HTTP) and its configuration
(``.../config`` over HTTP)."""

from __future__ import annotations

from typing import Any

from cnnserve.repository import ModelConfig
from server.model_manager import ServedModel


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


def configuration(config: ModelConfig) -> dict[str, Any]:
    """The model's configuration as Triton's ``model_config`` JSON names it."""

    def tensors(specs: tuple, labelled: str = "") -> list[dict[str, Any]]:
        return [{"name": t.name, "data_type": f"TYPE_{t.datatype}" if t.datatype != "BYTES" else "TYPE_STRING",
                 "dims": list(t.shape), **({"label_filename": labelled} if labelled and i == 0 else {})}
                for i, t in enumerate(specs)]  # fmt: skip

    return {
        "name": config.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [config.version]}},
        "max_batch_size": config.max_batch_size,
        "input": tensors(config.inputs),
        "output": tensors(config.outputs, "labels.txt" if config.labels else ""),
        "dynamic_batching": {
            "preferred_batch_size": list(config.preferred_batch_sizes),
            "max_queue_delay_microseconds": config.max_queue_delay_us,
        },
    }
