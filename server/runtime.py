"""ONNX Runtime sessions: choosing the execution provider, and running batches off the event loop.

Each :class:`ModelRunner` owns its sessions and one worker thread per session; ONNX Runtime
releases the GIL while it computes, so the event loop keeps serving while a batch runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import queue
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from server.repository import ModelConfig

log = logging.getLogger("cnnserve.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# ONNX element types (TensorProto codes as onnxruntime names them) for the V2 datatypes we serve.
ORT_TYPES = {"FP32": "tensor(float)", "FP16": "tensor(float16)", "UINT8": "tensor(uint8)",
             "INT64": "tensor(int64)", "INT32": "tensor(int32)", "FP64": "tensor(double)"}  # fmt: skip
NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16, "UINT8": np.uint8, "INT64": np.int64,
               "INT32": np.int32, "FP64": np.float64}  # fmt: skip


class RuntimeUnavailable(RuntimeError):
    """The requested execution provider cannot run here (``--device cuda`` without a usable GPU)."""


class GraphMismatch(ValueError):
    """The ONNX graph does not have the inputs and outputs config.json promises."""


def gpu_present() -> bool:
    """Whether an NVIDIA driver is here at all: asking ONNX Runtime for CUDA without one prints
    alarming ERROR lines before it falls back to the CPU."""
    if not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def providers_for(device: str) -> list[str]:
    if device == "cpu":
        return [CPU]
    cuda_listed = CUDA in ort.get_available_providers()
    if device == "cuda":
        if not cuda_listed:
            raise RuntimeUnavailable("--device cuda: this onnxruntime build has no CUDAExecutionProvider")
        if not gpu_present():
            raise RuntimeUnavailable("--device cuda: no NVIDIA driver found (/dev/nvidiactl, libcuda.so.1)")
    elif not (cuda_listed and gpu_present()):
        return [CPU]
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # finds the CUDA and cuDNN libraries installed as Python packages
    return [CUDA, CPU]


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    compute_seconds: float


class ModelRunner:
    """The sessions of one model; ``run`` executes one batch in a worker thread."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        device: str = "auto",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        instances: int = 1,
    ) -> None:
        self.config = config
        providers = providers_for(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.log_severity_level = 3  # errors only: the CPU fallback warnings are ours to report
        self._sessions: list[ort.InferenceSession] = [
            ort.InferenceSession(str(config.onnx_path), options, providers=providers) for _ in range(instances)
        ]
        # Ask the session, not the request: a CUDA provider that fails to load falls back silently.
        self.provider = self._sessions[0].get_providers()[0]
        if device == "cuda" and self.provider != CUDA:
            raise RuntimeUnavailable(f"--device cuda: {config.name} fell back to {self.provider}")
        check_graph(config, self._sessions[0])
        self._idle: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for session in self._sessions:
            self._idle.put(session)
        self._executor = ThreadPoolExecutor(max_workers=instances, thread_name_prefix=f"ort-{config.name}")
        self._output_names = [o.name for o in config.outputs]

    def _run_sync(self, inputs: dict[str, np.ndarray]) -> RunResult:
        session = self._idle.get()  # one worker per session, so one is always free here
        try:
            started = time.perf_counter()
            values = session.run(self._output_names, inputs)
            seconds = time.perf_counter() - started
        finally:
            self._idle.put(session)
        return RunResult(dict(zip(self._output_names, values, strict=True)), seconds)

    async def run(self, inputs: dict[str, np.ndarray]) -> RunResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_sync, inputs)

    async def warmup(self, batch_sizes: Sequence[int]) -> None:
        """Run zeros at each batch size on every session, so that no real request pays for
        ONNX Runtime's first allocations (or cuDNN's algorithm search) at a new size."""
        for size in batch_sizes:
            inputs = {
                t.name: np.zeros((size, *t.shape), dtype=NUMPY_TYPES.get(t.datatype, np.float32))
                for t in self.config.inputs
            }
            await asyncio.gather(*(self.run(inputs) for _ in self._sessions))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def check_graph(config: ModelConfig, session: ort.InferenceSession) -> None:
    """Refuse a graph whose inputs and outputs are not those of config.json."""
    graph_inputs = {i.name: i for i in session.get_inputs()}
    graph_outputs = {o.name: o for o in session.get_outputs()}
    for kind, specs, found in (("input", config.inputs, graph_inputs), ("output", config.outputs, graph_outputs)):
        names = [s.name for s in specs]
        if sorted(names) != sorted(found):
            raise GraphMismatch(
                f"{config.onnx_path}: config.json names {kind}s {names}, the ONNX graph has {sorted(found)}"
            )
        for spec in specs:
            arg = found[spec.name]
            expected_type = ORT_TYPES.get(spec.datatype)
            if expected_type and arg.type != expected_type:
                raise GraphMismatch(
                    f"{config.onnx_path}: {kind} {spec.name!r} is {arg.type}, config says {spec.datatype}"
                )
            dims = list(arg.shape)
            if dims and isinstance(dims[0], int):
                raise GraphMismatch(f"{config.onnx_path}: {kind} {spec.name!r} has a fixed batch axis {dims[0]}")
            if kind == "input" and [d for d in dims[1:]] != list(spec.shape):
                raise GraphMismatch(
                    f"{config.onnx_path}: input {spec.name!r} has item shape {dims[1:]}, config says {list(spec.shape)}"
                )
