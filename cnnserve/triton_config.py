"""A repository entry as Triton's ``model_config`` JSON describes it: what ``GET
/v2/models/NAME/config`` answers, in Triton's names (config.json's own are
:mod:`cnnserve.repository`'s)."""

from __future__ import annotations

from typing import Any

from cnnserve.repository import LABELS_FILE, PLATFORM, ModelConfig


def triton_config(config: ModelConfig) -> dict[str, Any]:
    """The entry as Triton's ``model_config`` JSON would describe it."""

    def tensors(specs: tuple, labelled: str = "") -> list[dict[str, Any]]:
        return [{"name": t.name, "data_type": f"TYPE_{t.datatype}" if t.datatype != "BYTES" else "TYPE_STRING",
                 "dims": list(t.shape), **({"label_filename": labelled} if labelled and i == 0 else {})}
                for i, t in enumerate(specs)]  # fmt: skip

    return {
        "name": config.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [config.version]}},
        "max_batch_size": config.max_batch_size,
        "input": tensors(config.inputs),
        "output": tensors(config.outputs, LABELS_FILE if config.labels else ""),
        "dynamic_batching": {
            "preferred_batch_size": list(config.preferred_batch_sizes),
            "max_queue_delay_microseconds": config.max_queue_delay_us,
        },
    }
