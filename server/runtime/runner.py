"""ONNX Runtime sessions of one model, running batches off the event loop.

Each :class:`ModelRunner` owns its sessions and one worker thread per instance. A batch arrives
as its requests' tensors; the worker thread copies them once into the session's own input
buffers and runs the session through IO binding (ONNX Runtime releases the GIL while it
computes), so the event loop neither joins nor pads batches, and never calls ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from cnnserve.datatypes import numpy_dtype
from cnnserve.repository import ModelConfig, TensorSpec
from cnnserve.server import errors
from cnnserve.server.runtime import pinned
from cnnserve.server.runtime.cuda_graphs import GraphIO
from cnnserve.server.runtime.devices import CUDA, RuntimeUnavailable, providers_for
from cnnserve.server.runtime.graph import check_graph
from cnnserve.server.runtime.shapes import BatchShapes

log = logging.getLogger("cnnserve.runtime")

CUDA_INSTANCES = 2
"""What ``instances=None`` (``--instances auto``) means on CUDA: one batch is copied in while
another computes; on the CPU one instance, whose session already uses every core."""


@dataclass  # not frozen: the CUDA-graph path sets copy_seconds after the run
class RunResult:
    outputs: dict[str, np.ndarray]
    compute_seconds: float  # one ONNX Runtime run of the batch, measured in the worker thread
    # Copying the requests' inputs into the session's buffers, before it; None when nothing was
    # copied (a lone request on the CPU is run from its own arrays).
    copy_seconds: float | None = None
    instance: int = 0  # which of the model's instances ran it (for traces); -1: the inline session


class ModelRunner:
    """The sessions of one model; ``run`` executes one batch in a worker thread.

    ``instances`` instances, each with its own worker thread (Triton's instance count: on a GPU,
    several sessions fed in parallel outrun one). An instance is one session, or with padded batch
    shapes (:mod:`cnnserve.server.runtime.shapes`) one session per bucket size, so that no session ever
    runs a second shape. ``intra_op_threads``/``inter_op_threads`` of 0 leave ONNX Runtime's
    defaults (one intra-op thread per core, per session).
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        device: str = "auto",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        instances: int | None = 1,
        spinning: bool = False,
        batch_shapes: str = "auto",
        cuda_options: Mapping[str, str] | None = None,
        cuda_graphs: bool = False,
    ) -> None:
        if instances is not None and instances < 1:
            raise ValueError(f"instances must be at least 1, or None for 2 on CUDA and 1 elsewhere, got {instances}")
        self.config = config
        requested = providers_for(device)
        self._options = _session_options(intra_op_threads, inter_op_threads, spinning)
        # Provider options go with their provider; the CPU provider takes none of ours.
        cuda = dict(cuda_options or {}) | ({"enable_cuda_graph": "1"} if cuda_graphs else {})
        self._requested = (requested, [cuda if p == CUDA else {} for p in requested])
        # One session first: a graph or provider refusal should not cost `instances` loads of a big model.
        first = self._new_session()
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
        if cuda_graphs and self.provider != CUDA:
            raise RuntimeUnavailable(
                f"--cuda-graphs: {config.name} runs on {self.provider}; CUDA graphs need the CUDA provider"
            )
        # Two on CUDA: one instance copies its batch in while the other computes.
        self.instances = instances or (CUDA_INSTANCES if self.provider == CUDA else 1)
        instances = self.instances
        self.shapes = BatchShapes.decide(batch_shapes, self.provider, config.max_batch_size,
                                         config.preferred_batch_sizes)  # fmt: skip
        if cuda_graphs and not self.shapes.buckets:
            raise RuntimeUnavailable(
                "--cuda-graphs: a CUDA graph replays one input shape; use --batch-shapes padded (or auto)"
            )
        # Instance i runs bucket b on sessions[i * len(sizes) + b]; exact shapes: one session, key 0.
        sizes = self.shapes.buckets or (0,)
        sessions = [first] + [self._new_session() for _ in range(instances * len(sizes) - 1)]
        # What the session really got, for the log and cnnserve_model_info: only the options we set.
        got = first.get_provider_options().get(self.provider, {})
        self.provider_options = {k: str(got[k]) for k in sorted(cuda) if k in got}
        self._sessions = tuple(sessions)
        self._idle: queue.SimpleQueue[dict[int, ort.InferenceSession]] = queue.SimpleQueue()
        for i in range(instances):
            self._idle.put(dict(zip(sizes, sessions[i * len(sizes) : (i + 1) * len(sizes)], strict=True)))
        # Which instance a session belongs to, by id(): a trace says which one ran its batch.
        self._instance_of = {id(s): i // len(sizes) for i, s in enumerate(sessions)}
        self._executor = ThreadPoolExecutor(max_workers=instances, thread_name_prefix=f"ort-{config.name}")
        self._output_names = [o.name for o in config.outputs]
        self._closed = False
        # IO binding takes numeric tensors; a model with a BYTES input runs through session.run.
        self._bindable = all(t.datatype != "BYTES" for t in config.inputs)
        self._buffers: dict[int, dict[str, np.ndarray]] = {}  # id(session) -> its input buffers
        self._pinned: set[int] = set()  # id() of the buffers registered with CUDA
        self._cuda_graphs = cuda_graphs
        self._graph_io: dict[int, GraphIO] = {}  # id(session) -> its device inputs and outputs
        self._inline: dict[int, ort.InferenceSession] | None = None  # see prepare_inline()

    def _new_session(self, options: ort.SessionOptions | None = None) -> ort.InferenceSession:
        providers, provider_options = self._requested
        return ort.InferenceSession(
            str(self.config.onnx_path), options or self._options, providers=providers, provider_options=provider_options
        )

    def provider_options_label(self) -> str:
        """The provider options the sessions really got, as "key=value,key=value"."""
        return ",".join(f"{k}={v}" for k, v in self.provider_options.items())

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

    def _run_sync(self, parts: Sequence[Mapping[str, np.ndarray]]) -> RunResult:
        # One worker per instance, so an idle instance is always waiting here.
        instance = self._idle.get()
        try:
            return self._run_on(instance, parts)
        finally:
            self._idle.put(instance)

    def _run_on(
        self, instance: Mapping[int, ort.InferenceSession], parts: Sequence[Mapping[str, np.ndarray]]
    ) -> RunResult:
        batch = sum(next(iter(part.values())).shape[0] for part in parts)
        size = self.shapes.padded(batch)
        session = instance[size if self.shapes.buckets else 0]
        if not self._bindable:
            result = self._timed(session, _joined(parts, size))
        elif len(parts) == 1 and batch == size and self.provider != CUDA:
            # On the CPU a lone request's own arrays can be the session's inputs: copying them
            # into a bound buffer first would cost more than the run of a small model.
            result = self._timed(session, parts[0])
        else:
            result = self._bound(session, parts, batch, size)
        result.instance = self._instance_of.get(id(session), -1)
        return result

    def prepare_inline(self) -> None:
        """Give the runs made on the calling thread (``run_inline``) a session of their own on the
        CPU, with one intra-op thread and warmed up at one item: the runs worth making there are
        so short that waking ONNX Runtime's other threads costs more than they save (and in the
        server those threads would compete with gRPC's for the cores). On CUDA the
        instances' sessions are used as they are. Blocking: call it from a worker thread."""
        if self.provider == CUDA:
            return
        size = self.shapes.padded(1) if self.shapes.buckets else 0
        session = self._new_session(_session_options(1, 1, spinning=False))
        self._timed(session, {t.name: _zeros(t, max(size, 1)) for t in self.config.inputs})
        self._inline = {size: session}

    def run_inline(self, parts: Sequence[Mapping[str, np.ndarray]]) -> RunResult | None:
        """Run a one-item batch on the calling thread (the event loop's, for a model cheaper to
        run than to hand to a worker thread): on the session of ``prepare_inline`` when there is
        one, else on an instance if one is free; None, and nothing done, for a larger batch or
        when no instance is free. Like ``run``, the batcher's entry: not checked again."""
        if self._closed:
            raise errors.Unavailable(f"model {self.config.name!r} is shut down")
        if len(parts) > 1 or next(iter(parts[0].values())).shape[0] > 1:
            return None  # the decision to run inline was measured for one item; more go to a worker
        if self._inline is not None:
            return self._run_on(self._inline, parts)
        try:
            instance = self._idle.get_nowait()
        except queue.Empty:
            return None
        try:
            return self._run_on(instance, parts)
        finally:
            self._idle.put(instance)

    async def lone_compute_seconds(self, repeats: int = 7) -> float:
        """The median compute time of a lone request (one item, after warm-up), on a worker
        thread: what deciding to run lone requests inline is measured against."""
        one = {t.name: _zeros(t, 1) for t in self.config.inputs}
        results = [await self._submit(self._run_sync, [one]) for _ in range(repeats)]
        return float(np.median([r.compute_seconds + (r.copy_seconds or 0.0) for r in results]))

    def _bound(
        self, session: ort.InferenceSession, parts: Sequence[Mapping[str, np.ndarray]], batch: int, size: int
    ) -> RunResult:
        """One run through IO binding: each request's tensors are copied once, here in the worker
        thread, into the session's own input buffers (the padding zeroed behind them), and the
        outputs are copied out once."""
        buffers = self._buffers.get(id(session), {})
        held = len(next(iter(buffers.values()))) if buffers else 0
        if held < size:
            # Padded shapes: exactly the session's bucket; exact shapes: doubled as larger batches
            # come, up to max_batch_size.
            capacity = size if self.shapes.buckets else min(max(size, 2 * held), self.config.max_batch_size)
            self._release(buffers)
            buffers = {t.name: np.empty((capacity, *t.shape), numpy_dtype(t.datatype)) for t in self.config.inputs}
            if self.provider == CUDA:
                self._pinned.update(id(b) for b in buffers.values() if pinned.pin(b))
            self._buffers[id(session)] = buffers
        copying = time.perf_counter()
        for name, buffer in buffers.items():
            np.concatenate([part[name] for part in parts], out=buffer[:batch])
            buffer[batch:size] = 0
        copied = time.perf_counter() - copying
        if self._cuda_graphs:
            result = self._replayed(session, buffers, batch, size)
            result.copy_seconds = copied
            return result
        binding = session.io_binding()
        for name, buffer in buffers.items():
            binding.bind_cpu_input(name, buffer[:size])
        for name in self._output_names:
            binding.bind_output(name)
        started = time.perf_counter()
        session.run_with_iobinding(binding)
        seconds = time.perf_counter() - started
        values = binding.copy_outputs_to_cpu()
        outputs = {name: v[:batch] for name, v in zip(self._output_names, values, strict=True)}
        return RunResult(outputs, seconds, copied)

    def _replayed(
        self, session: ort.InferenceSession, buffers: Mapping[str, np.ndarray], batch: int, size: int
    ) -> RunResult:
        try:
            io = self._graph_io.get(id(session))
            if io is None:
                io = self._graph_io[id(session)] = GraphIO(session, self.config, size)
            outputs, seconds = io.run(session, buffers, size)
        except Exception as exc:  # the first run captures: a model that cannot be captured fails here
            raise RuntimeUnavailable(
                f"--cuda-graphs: {self.config.name} at batch {size}: {type(exc).__name__}: {exc}"
            ) from exc
        return RunResult({name: outputs[name][:batch] for name in self._output_names}, seconds)

    def _timed(self, session: ort.InferenceSession, inputs: Mapping[str, np.ndarray]) -> RunResult:
        started = time.perf_counter()
        values = session.run(self._output_names, dict(inputs))
        seconds = time.perf_counter() - started
        return RunResult(dict(zip(self._output_names, values, strict=True)), seconds)

    async def run(self, parts: Sequence[Mapping[str, np.ndarray]]) -> RunResult:
        """Run several requests' inputs as one batch, in their order, on the next idle instance:
        they are joined in its worker thread, never on the event loop. The batcher's entry: the
        data plane checked every part against the model and the batcher formed the batch within
        max_batch_size, so nothing is checked again."""
        return await self._submit(self._run_sync, parts)

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

    async def warmup(self, batch_sizes: Iterable[int]) -> dict[int, float]:
        """Run zeros through every session, so that no real request pays for ONNX Runtime's first
        allocations (or cuDNN's algorithm search) at a new size: with exact shapes every session at
        each of ``batch_sizes``, with padded shapes each session at its own bucket only (the
        batch sizes given are then checked, and padded like any batch).

        Returns batch size -> the slowest session's compute seconds at that size. Each session is
        targeted directly (the idle queue would not guarantee that every session gets each size).
        """
        sizes = sorted(set(batch_sizes))
        if any(not 1 <= b <= self.config.max_batch_size for b in sizes):
            raise ValueError(
                f"{self.config.name}: warm-up batch sizes {sizes} must be 1 to {self.config.max_batch_size}"
            )
        buckets = self.shapes.buckets
        slowest: dict[int, float] = {}
        for size in buckets or sizes:
            inputs = {t.name: _zeros(t, size) for t in self.config.inputs}
            # Padded: the sessions of this bucket, one per instance; exact: every session.
            sessions = self._sessions[buckets.index(size) :: len(buckets)] if buckets else self._sessions
            results = await asyncio.gather(*(self._submit(self._warm, s, inputs, size) for s in sessions))
            slowest[size] = max(r.compute_seconds for r in results)
        return slowest

    def _warm(self, session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], size: int) -> RunResult:
        """One warm-up run, on the path requests take (which also allocates its buffers and, with
        CUDA graphs, captures the graph)."""
        if not self._bindable:
            return self._timed(session, inputs)
        return self._bound(session, [inputs], size, size)

    def close(self) -> None:
        """Refuse new work and wait for the batches already running; calling it twice is harmless."""
        self._closed = True
        self._executor.shutdown(wait=True)
        for buffers in self._buffers.values():
            self._release(buffers)
        self._buffers.clear()

    def _release(self, buffers: Mapping[str, np.ndarray]) -> None:
        """Unregister pinned buffers before they are dropped (CUDA would keep the pages locked)."""
        for buffer in buffers.values():
            if id(buffer) in self._pinned:
                self._pinned.discard(id(buffer))
                pinned.unpin(buffer)

    @property
    def pinned_buffers(self) -> int:
        """How many input buffers are page-locked (0 off CUDA, or where CUDA refused)."""
        return len(self._pinned)


def _session_options(intra_op_threads: int, inter_op_threads: int, spinning: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    # Errors only: ONNX Runtime warns, for example, about every shape node it keeps on the CPU
    # next to CUDA. Fallbacks that matter are reported by this module instead.
    options.log_severity_level = 3
    # Spinning intra-op threads burn the cores the event loop needs between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def _joined(parts: Sequence[Mapping[str, np.ndarray]], size: int) -> dict[str, np.ndarray]:
    """The parts' tensors concatenated and zero-padded to ``size`` items (the unbound path)."""
    joined = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return {name: _pad(array, size) if len(array) < size else array for name, array in joined.items()}


def _pad(array: np.ndarray, batch: int) -> np.ndarray:
    padded = np.zeros((batch, *array.shape[1:]), dtype=array.dtype)
    padded[: array.shape[0]] = array
    return padded


def _zeros(spec: TensorSpec, batch: int) -> np.ndarray:
    shape = (batch, *spec.shape)
    if spec.datatype == "BYTES":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=numpy_dtype(spec.datatype))
