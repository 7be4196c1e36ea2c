"""How many workers' CUDA sessions fit on the GPU: checked by the supervisor before it starts any,
so that a fifth worker does not fail half-way through loading with an out-of-memory error.

Each worker holds its own sessions (``--instances`` of each model, times one per padded batch
shape on CUDA) and its own CUDA context. The estimate per worker is the context plus, for every
session, its ONNX file's size (the weights) times ``ARENA_FACTOR`` (activations and cuDNN
workspace beside them). The free memory is read through NVML, which, unlike the CUDA runtime,
creates no context (the supervisor would otherwise hold a few hundred MB of the GPU itself).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from cnnserve.repository import scan
from cnnserve.server.runtime.devices import CUDA
from cnnserve.server.runtime.runner import CUDA_INSTANCES
from cnnserve.server.runtime.shapes import BatchShapes
from cnnserve.server.settings import MIB, Settings

CONTEXT_BYTES = 600 * MIB
"""A process's CUDA context with cuDNN and cuBLAS loaded (300-700 MiB, by driver and GPU)."""
ARENA_FACTOR = 2.0
"""A session's memory as a multiple of its weights: the weights, and about as much again."""


@dataclass(frozen=True)
class Estimate:
    per_worker: int  # bytes
    sessions: int  # per worker

    def describe(self) -> str:
        return f"{self.per_worker / 2**30:.1f} GiB each ({self.sessions} CUDA sessions and a CUDA context)"


def estimate(settings: Settings) -> Estimate:
    """The GPU memory one worker needs for the models ``settings`` serve."""
    configs, _ = scan(settings.repo, settings.batching_overrides())
    if settings.models:
        configs = [c for c in configs if c.name in settings.models]
    total, sessions = CONTEXT_BYTES, 0
    for config in configs:
        shapes = BatchShapes.decide(settings.batch_shapes, CUDA, config.max_batch_size, config.preferred_batch_sizes)
        instances = settings.instances or config.instance_count or CUDA_INSTANCES
        count = instances * max(1, len(shapes.buckets))
        sessions += count
        total += int(config.onnx_path.stat().st_size * ARENA_FACTOR) * count
    return Estimate(total, sessions)


def fitting_workers(requested: int | None, auto: int, per_worker: int, free: int) -> tuple[int, str | None]:
    """How many workers to start, and the refusal when they cannot fit: ``auto`` (``requested``
    None) is lowered to what fits; an explicit number that does not fit, or a GPU where not even
    one worker fits, is refused rather than left to fail mid-load."""
    fit = free // per_worker
    if fit < 1:
        return 0, f"one worker needs about {per_worker / 2**30:.1f} GiB of GPU memory"
    if requested is None:
        return min(auto, fit), None
    if requested <= fit:
        return requested, None
    return requested, f"--workers {requested} needs about {requested * per_worker / 2**30:.1f} GiB of GPU memory"


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def free_bytes() -> int | None:
    """Free memory of the GPU the sessions use (the first of ``CUDA_VISIBLE_DEVICES``, else 0),
    from NVML; None where NVML cannot say."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    index = int(visible) if visible.isdigit() else 0
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        handle, memory = ctypes.c_void_p(), _Memory()
        if nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
            return None
        if nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
            return None
        return int(memory.free)
    finally:
        nvml.nvmlShutdown()
