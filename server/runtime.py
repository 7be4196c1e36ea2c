"""ONNX Runtime sessions: choosing the execution provider, and running batches off the event loop.

Each :class:`ModelRunner` owns its sessions and one worker thread per session. ONNX Runtime
releases the GIL while it computes, so the event loop keeps serving while a batch runs; it never
calls ONNX Runtime itself.

Provider choice (``device``):

- ``cpu``: CPUExecutionProvider only.
- ``auto``: CUDA only where it can plausibly work: the CUDA provider is listed *and* the NVIDIA
  driver initialises and reports a device. The onnxruntime-gpu wheel lists CUDA everywhere, and
  asking for it on a machine without a GPU prints ERROR lines before it falls back to the CPU;
  a CPU-only machine must start quietly.
- ``cuda``: CUDA or a :class:`RuntimeUnavailable` error that names what is missing.

Either way, what is reported is what the session says it uses (``get_providers()``): a CUDA
provider whose libraries fail to load falls back to the CPU without raising.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import queue
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from server import errors
from server.repository import ModelConfig, TensorSpec

log = logging.getLogger("cnnserve.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")

# V2 datatype -> (ONNX Runtime's element type name, numpy dtype).
TYPES: Mapping[str, tuple[str, type[np.generic]]] = {
    "BOOL": ("tensor(bool)", np.bool_),
    "UINT8": ("tensor(uint8)", np.uint8),
    "UINT16": ("tensor(uint16)", np.uint16),
    "UINT32": ("tensor(uint32)", np.uint32),
    "UINT64": ("tensor(uint64)", np.uint64),
    "INT8": ("tensor(int8)", np.int8),
    "INT16": ("tensor(int16)", np.int16),
    "INT32": ("tensor(int32)", np.int32),
    "INT64": ("tensor(int64)", np.int64),
    "FP16": ("tensor(float16)", np.float16),
    "FP32": ("tensor(float)", np.float32),
    "FP64": ("tensor(double)", np.float64),
    "BYTES": ("tensor(string)", np.object_),
}
NUMPY_TYPES = {name: dtype for name, (_, dtype) in TYPES.items()}


class RuntimeUnavailable(RuntimeError):
    """The requested execution provider cannot run here (``--device cuda`` without a usable GPU)."""


class GraphMismatch(ValueError):
    """The ONNX graph does not have the inputs and outputs config.json promises."""


_CUDA_ERROR_NO_DEVICE = 100  # what cuInit returns with no device visible (CUDA_VISIBLE_DEVICES="")


@functools.cache
def cuda_problem() -> str:
    """Why no CUDA device is usable in this process, or "" when the NVIDIA driver reports one.

    Asks the driver itself (``cuInit`` and ``cuDeviceGetCount`` from libcuda.so.1) rather than
    looking for /dev/nvidiactl: that also covers WSL2 (no such node), a container with the driver
    library but no device, and CUDA_VISIBLE_DEVICES="" - each a case where ONNX Runtime would print
    ERROR lines and fall back. It initialises CUDA in this process, as the CUDA provider would.
    """
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver found (libcuda.so.1 does not load)"
    status = driver.cuInit(0)
    count = ctypes.c_int(0)
    if status == 0:
        status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status == _CUDA_ERROR_NO_DEVICE or (status == 0 and count.value == 0):
        return "the NVIDIA driver reports no device (is CUDA_VISIBLE_DEVICES set?)"
    if status != 0:
        return f"the NVIDIA driver did not initialise (CUDA driver error {status})"
    return ""


def gpu_present() -> bool:
    return not cuda_problem()


@functools.cache
def _preload_cuda_libraries() -> None:
    # Finds CUDA and cuDNN installed as Python packages (nvidia-*-cu13), which are not on the
    # loader's path; without it the CUDA provider fails to load and the session falls back.
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()


def providers_for(device: str) -> list[str]:
    """The providers to ask ONNX Runtime for; raises RuntimeUnavailable for ``cuda`` without a GPU."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU]
    cuda_listed = CUDA in ort.get_available_providers()
    if device == "cuda":
        if not cuda_listed:
            raise RuntimeUnavailable(
                f"--device cuda: this onnxruntime build ({ort.__version__}) has no {CUDA}; install onnxruntime-gpu"
            )
        if not gpu_present():
            raise RuntimeUnavailable(f"--device cuda: {cuda_problem()}")
    elif not (cuda_listed and gpu_present()):
        return [CPU]
    _preload_cuda_libraries()
    return [CUDA, CPU]


@dataclass  # not frozen: batching.BatchResult is a protocol with plain (settable) attributes
class RunResult:
    outputs: dict[str, np.ndarray]
    compute_seconds: float  # one ONNX Runtime run of the batch, measured in the worker thread


class ModelRunner:
    """The sessions of one model; ``run`` executes one batch in a worker thread.

    ``instances`` sessions, each with its own worker thread (Triton's instance count: on a GPU,
    several sessions fed in parallel outrun one). ``intra_op_threads``/``inter_op_threads`` of 0
    leave ONNX Runtime's defaults (one intra-op thread per core, per session).
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        device: str = "auto",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        instances: int = 1,
        spinning: bool = False,
    ) -> None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        self.config = config
        requested = providers_for(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        # Errors only: ONNX Runtime warns, for example, about every shape node it keeps on the CPU
        # next to CUDA. Fallbacks that matter are reported by this module instead.
        options.log_severity_level = 3
        # Spinning intra-op threads burn the cores the event loop needs between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        # One session first: a graph or provider refusal should not cost `instances` loads of a big model.
        first = ort.InferenceSession(str(config.onnx_path), options, providers=requested)
        check_graph(config, first)
        # Ask the session, not the request: a CUDA provider that fails to load falls back silently.
        self._providers = tuple(first.get_providers())
        if CUDA in requested and self.provider != CUDA:
            if device == "cuda":
                raise RuntimeUnavailable(
                    f"--device cuda: {config.name} fell back to {self.provider}: the CUDA provider did not load "
                    f"(onnxruntime-gpu {ort.__version__} needs the CUDA and cuDNN libraries, "
                    "e.g. pip install onnxruntime-gpu[cuda,cudnn])"
                )
            log.warning("%s: CUDA was requested but ONNX Runtime fell back to %s", config.name, self.provider)
        sessions = [first] + [
            ort.InferenceSession(str(config.onnx_path), options, providers=requested) for _ in range(instances - 1)
        ]
        self._sessions = tuple(sessions)
        self._idle: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for session in sessions:
            self._idle.put(session)
        self._executor = ThreadPoolExecutor(max_workers=instances, thread_name_prefix=f"ort-{config.name}")
        self._output_names = [o.name for o in config.outputs]
        self._closed = False
        self._pad_to: tuple[int, ...] = ()  # set by warmup() on CUDA

    @property
    def provider(self) -> str:
        """The execution provider actually in use, e.g. "CPUExecutionProvider"."""
        return self._providers[0]

    @property
    def providers(self) -> tuple[str, ...]:
        """Every provider the sessions hold, in priority order (CUDA keeps the CPU for some nodes)."""
        return self._providers

    @property
    def sessions(self) -> tuple[ort.InferenceSession, ...]:
        return self._sessions

    def _run_sync(self, inputs: Mapping[str, np.ndarray]) -> RunResult:
        # One worker per session, so an idle session is always waiting here.
        session = self._idle.get()
        try:
            batch = next(iter(inputs.values())).shape[0]
            padded = self._padded_size(batch)
            if padded == batch:
                return self._timed(session, inputs)
            result = self._timed(session, {k: _pad(v, padded) for k, v in inputs.items()})
            result.outputs = {k: v[:batch] for k, v in result.outputs.items()}
            return result
        finally:
            self._idle.put(session)

    def _padded_size(self, batch: int) -> int:
        """On CUDA, the smallest warmed-up batch size that holds ``batch``: every new input shape
        costs cuDNN an algorithm search (about a second for ResNet-50 on an H100, measured), so a
        batch of 13 runs as one of 32 zero-padded rather than paying it. The CPU has no such
        search and pays for every padded item, so it runs batches as they come."""
        if not self._pad_to:
            return batch
        return next((size for size in self._pad_to if size >= batch), batch)

    def _timed(self, session: ort.InferenceSession, inputs: Mapping[str, np.ndarray]) -> RunResult:
        started = time.perf_counter()
        values = session.run(self._output_names, dict(inputs))
        seconds = time.perf_counter() - started
        return RunResult(dict(zip(self._output_names, values, strict=True)), seconds)

    async def run(self, inputs: Mapping[str, np.ndarray]) -> RunResult:
        """Run one batch (every input with the same leading batch size) on the next idle session."""
        self._check_inputs(inputs)
        return await self._submit(self._run_sync, inputs)

    async def _submit(self, fn: Callable[..., RunResult], *args: Any) -> RunResult:
        if self._closed:
            raise errors.Unavailable(f"model {self.config.name!r} is shut down")
        try:
            result: RunResult = await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:
            if self._closed:  # closed between the check above and the submission
                raise errors.Unavailable(f"model {self.config.name!r} is shut down") from exc
            raise
        return result

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """A cheap guard that turns a malformed batch into INVALID_ARGUMENT instead of an ONNX
        Runtime exception deep in a worker thread."""
        name = self.config.name
        expected = [t.name for t in self.config.inputs]
        if sorted(inputs) != sorted(expected):
            raise errors.InvalidArgument(f"model {name!r}: expected inputs {expected}, got {sorted(inputs)}")
        sizes = set()
        for spec in self.config.inputs:
            array = inputs[spec.name]
            dtype = NUMPY_TYPES[spec.datatype]
            if array.dtype != dtype or tuple(array.shape[1:]) != spec.shape or array.ndim != len(spec.shape) + 1:
                raise errors.InvalidArgument(
                    f"model {name!r}: input {spec.name!r} must be {np.dtype(dtype).name} [batch, "
                    f"{', '.join(map(str, spec.shape))}], got {array.dtype.name} {list(array.shape)}"
                )
            sizes.add(array.shape[0])
        if len(sizes) > 1:
            raise errors.InvalidArgument(f"model {name!r}: inputs disagree on the batch size: {sorted(sizes)}")
        batch = sizes.pop()
        if not 1 <= batch <= self.config.max_batch_size:
            raise errors.InvalidArgument(
                f"model {name!r}: batch size must be 1 to {self.config.max_batch_size}, got {batch}"
            )

    async def warmup(self, batch_sizes: Iterable[int]) -> dict[int, float]:
        """Run zeros at each batch size on every session, so that no real request pays for ONNX
        Runtime's first allocations (or cuDNN's algorithm search) at a new size.

        Returns batch size -> the slowest session's compute seconds at that size. Each session is
        targeted directly (the idle queue would not guarantee that every session gets each size).
        """
        sizes = sorted(set(batch_sizes))
        if any(not 1 <= b <= self.config.max_batch_size for b in sizes):
            raise ValueError(
                f"{self.config.name}: warm-up batch sizes {sizes} must be 1 to {self.config.max_batch_size}"
            )
        if self.provider == CUDA:
            # Every batch will run at one of these sizes; max_batch_size ensures one fits.
            sizes = sorted({*sizes, self.config.max_batch_size})
            self._pad_to = tuple(sizes)
        slowest: dict[int, float] = {}
        for size in sizes:
            inputs = {t.name: _zeros(t, size) for t in self.config.inputs}
            results = await asyncio.gather(*(self._submit(self._timed, s, inputs) for s in self._sessions))
            slowest[size] = max(r.compute_seconds for r in results)
        return slowest

    def close(self) -> None:
        """Refuse new work and wait for the batches already running; calling it twice is harmless."""
        self._closed = True
        self._executor.shutdown(wait=True)


def _pad(array: np.ndarray, batch: int) -> np.ndarray:
    padded = np.zeros((batch, *array.shape[1:]), dtype=array.dtype)
    padded[: array.shape[0]] = array
    return padded


def _zeros(spec: TensorSpec, batch: int) -> np.ndarray:
    shape = (batch, *spec.shape)
    if spec.datatype == "BYTES":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=NUMPY_TYPES[spec.datatype])


def check_graph(config: ModelConfig, session: ort.InferenceSession) -> None:
    """Refuse a graph whose inputs and outputs are not those of config.json: names, element types,
    rank and fixed item dimensions, and a symbolic batch axis (the batcher concatenates requests)."""
    where = config.onnx_path
    for kind, specs, args in (
        ("input", config.inputs, session.get_inputs()),
        ("output", config.outputs, session.get_outputs()),
    ):
        found = {a.name: a for a in args}
        names = [s.name for s in specs]
        if sorted(names) != sorted(found):
            raise GraphMismatch(
                f"{where}: config.json names {kind}s {names}, but the ONNX graph's {kind}s are {sorted(found)}"
            )
        for spec in specs:
            arg = found[spec.name]
            onnx_type = TYPES[spec.datatype][0]
            if arg.type != onnx_type:
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} is {arg.type} in the graph, config.json says {spec.datatype}"
                )
            dims: Sequence[Any] = arg.shape
            if len(dims) != len(spec.shape) + 1:
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} has shape {list(dims)} in the graph, config.json says "
                    f"[batch, {', '.join(map(str, spec.shape))}]"
                )
            if isinstance(dims[0], int):
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} has a fixed batch axis of {dims[0]}; export with a dynamic one"
                )
            # A symbolic item dimension (a str or None) accepts anything; a fixed one must match.
            if any(isinstance(d, int) and d != s for d, s in zip(dims[1:], spec.shape, strict=True)):
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} has item shape {list(dims[1:])} in the graph, "
                    f"config.json says {list(spec.shape)}"
                )
