"""ONNX Runtime sessions: parity with a bare session, concurrency, warm-up, provider choice, refusals.

Nothing here asserts on time. On a CPU-only machine (CI), ``device="auto"`` must pick the CPU
without ONNX Runtime's CUDA error lines, and ``device="cuda"`` must refuse loudly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from cnnserve.repository import ModelConfig, load_entry
from cnnserve.server import errors
from cnnserve.server.runtime import devices
from cnnserve.server.runtime.devices import CPU, CUDA, RuntimeUnavailable
from cnnserve.server.runtime.graph import GraphMismatch
from cnnserve.server.runtime.runner import ModelRunner
from cnnserve.server.runtime.shapes import BatchShapes
from cnnserve.server.settings import Settings

CUDA_WORKS_HERE = CUDA in ort.get_available_providers() and devices.gpu_present()


@pytest.fixture(scope="module")
def resnet(exported_repo: Path) -> ModelConfig:
    return load_entry(exported_repo / "cifar_resnet20")


@pytest.fixture(scope="module")
def reference(resnet: ModelConfig) -> ort.InferenceSession:
    """A bare session on the same file: what the runner must reproduce."""
    return ort.InferenceSession(str(resnet.onnx_path), providers=[CPU])


@pytest.fixture
def runner(resnet: ModelConfig) -> Iterator[ModelRunner]:
    r = ModelRunner(resnet, device="cpu", instances=2)
    yield r
    r.close()


def images(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 32), dtype=np.float32)


def test_results_equal_a_bare_session(resnet: ModelConfig, reference: ort.InferenceSession) -> None:
    runner = ModelRunner(resnet, device="auto")
    try:
        x = images(5, seed=1)
        result = asyncio.run(runner.run([{"input": x}]))
    finally:
        runner.close()
    (expected,) = reference.run(["logits"], {"input": x})
    assert list(result.outputs) == ["logits"]
    np.testing.assert_allclose(result.outputs["logits"], expected, rtol=0, atol=1e-6)
    assert result.compute_seconds >= 0


class SessionSpy:
    """Wraps every session's runs (``run``, and ``run_with_iobinding`` with the batch size its
    binding was given): records batch sizes, and how many threads used a session at once."""

    def __init__(self, runner: ModelRunner) -> None:
        self.sizes: dict[int, list[int]] = {i: [] for i in range(len(runner.sessions))}
        self.most_at_once = 0
        self._busy = [0] * len(runner.sessions)
        self._lock = threading.Lock()
        for i, session in enumerate(runner.sessions):
            session.run = self._wrap(i, session.run, lambda _names, feeds, *_: next(iter(feeds.values())).shape[0])
            session.run_with_iobinding = self._wrap(i, session.run_with_iobinding, lambda b, *_: b.spied_size)
            session.io_binding = self._recording(session.io_binding)

    @staticmethod
    def _recording(io_binding: Any) -> Any:
        def make() -> Any:
            binding = io_binding()
            bind = binding.bind_cpu_input

            def bind_cpu_input(name: str, array: np.ndarray) -> Any:
                binding.spied_size = array.shape[0]
                return bind(name, array)

            binding.bind_cpu_input = bind_cpu_input
            return binding

        return make

    def _wrap(self, index: int, run: Any, size_of: Any) -> Any:
        """``run`` counted under session ``index``; ``size_of`` reads the batch size from the
        call's arguments (session.run's feeds, or the binding)."""

        def spy(*args: Any) -> Any:
            with self._lock:
                self._busy[index] += 1
                self.most_at_once = max(self.most_at_once, self._busy[index])
                self.sizes[index].append(size_of(*args))
            try:
                return run(*args)
            finally:
                with self._lock:
                    self._busy[index] -= 1

        return spy


def test_concurrent_runs_on_two_instances(runner: ModelRunner, reference: ort.InferenceSession) -> None:
    spy = SessionSpy(runner)
    batches = [images(1 + i % 4, seed=i) for i in range(8)]

    async def main() -> list[Any]:
        return await asyncio.gather(*(runner.run([{"input": x}]) for x in batches))

    results = asyncio.run(main())
    for x, result in zip(batches, results, strict=True):
        (expected,) = reference.run(["logits"], {"input": x})
        np.testing.assert_allclose(result.outputs["logits"], expected, rtol=0, atol=1e-6)
    assert sum(len(s) for s in spy.sizes.values()) == 8
    assert spy.most_at_once == 1  # a session is never shared by two worker threads


def test_warmup_runs_every_size_on_every_session(runner: ModelRunner) -> None:
    spy = SessionSpy(runner)
    warmed = asyncio.run(runner.warmup([8, 1, 4, 4]))
    assert sorted(warmed) == [1, 4, 8]
    assert spy.sizes == {0: [1, 4, 8], 1: [1, 4, 8]}
    with pytest.raises(ValueError, match=r"warm-up batch sizes \[0, 1\] must be 1 to"):
        asyncio.run(runner.warmup([0, 1]))


def test_provider_is_the_cpu_here(resnet: ModelConfig) -> None:
    for device in ("auto", "cpu"):
        runner = ModelRunner(resnet, device=device)
        runner.close()
        expected = CUDA if device == "auto" and CUDA_WORKS_HERE else CPU
        assert runner.provider == expected and runner.providers[0] == expected


@pytest.mark.skipif(CUDA_WORKS_HERE, reason="a usable GPU is present")
def test_device_cuda_refuses_a_machine_without_a_gpu(resnet: ModelConfig) -> None:
    missing = (
        r"--device cuda: (this onnxruntime build .* has no CUDAExecutionProvider|no NVIDIA driver|the NVIDIA driver)"
    )
    with pytest.raises(RuntimeUnavailable, match=missing):
        devices.providers_for("cuda")
    with pytest.raises(RuntimeUnavailable, match=missing):
        ModelRunner(resnet, device="cuda")


@pytest.mark.skipif(
    CUDA_WORKS_HERE or CUDA not in ort.get_available_providers(),
    reason="needs the onnxruntime-gpu wheel on a machine where CUDA cannot load",
)
def test_a_cuda_provider_that_falls_back_is_caught(
    resnet: ModelConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Pretend a driver is present: ONNX Runtime then asks for CUDA, cannot load it, and falls back."""
    monkeypatch.setattr(devices, "gpu_present", lambda: True)
    monkeypatch.setattr(devices, "_preload_cuda_libraries", lambda: None)
    assert devices.providers_for("auto") == [CUDA, CPU]
    with pytest.raises(RuntimeUnavailable, match=r"--device cuda: cifar_resnet20 fell back to CPUExecutionProvider"):
        ModelRunner(resnet, device="cuda")
    with caplog.at_level(logging.WARNING, logger="cnnserve.runtime"):
        runner = ModelRunner(resnet, device="auto")
    runner.close()
    assert runner.provider == CPU
    assert "CUDA was requested but ONNX Runtime fell back to CPUExecutionProvider" in caplog.text


def test_device_auto_prints_no_onnxruntime_errors(resnet: ModelConfig) -> None:
    """In a fresh process, as the server starts: nothing on stderr, in particular no CUDA ERROR."""
    script = f"""
import asyncio, numpy as np
from cnnserve.repository import load_entry
from cnnserve.server.runtime.runner import ModelRunner
runner = ModelRunner(load_entry({str(resnet.onnx_path.parent.parent)!r}), device="auto")
asyncio.run(runner.warmup([1, 2]))
print(runner.provider)
runner.close()
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (CUDA if CUDA_WORKS_HERE else CPU)
    assert "[E:onnxruntime" not in run.stderr and "[W:onnxruntime" not in run.stderr
    if not CUDA_WORKS_HERE:
        assert run.stderr == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"inputs": ("name", "pixels")},
            r"config\.json names inputs \['pixels'\], but the ONNX graph's inputs are \['input'\]",
        ),
        (
            {"outputs": ("name", "probabilities")},
            r"config\.json names outputs \['probabilities'\], but the ONNX graph's outputs are \['logits'\]",
        ),
        ({"inputs": ("datatype", "UINT8")}, r"input 'input' is tensor\(float\) in the graph, config\.json says UINT8"),
        ({"inputs": ("shape", (3, 28, 28))}, r"input 'input' has item shape \[3, 32, 32\] in the graph"),
        ({"inputs": ("shape", (3, 32))}, r"input 'input' has shape \['batch', 3, 32, 32\] in the graph"),
        ({"outputs": ("shape", (1000,))}, r"output 'logits' has item shape \[10\] in the graph, config\.json says"),
    ],
)
def test_config_that_does_not_match_the_graph_is_refused(
    resnet: ModelConfig, change: dict[str, tuple[str, Any]], message: str
) -> None:
    ((side, (field, value)),) = change.items()
    specs = getattr(resnet, side)
    replaced: dict[str, Any] = {side: (dataclasses.replace(specs[0], **{field: value}),)}
    config = dataclasses.replace(resnet, **replaced)
    with pytest.raises(GraphMismatch, match=message) as info:
        ModelRunner(config, device="cpu")
    assert str(resnet.onnx_path) in str(info.value)


def test_run_after_close_is_unavailable(runner: ModelRunner) -> None:
    runner.close()
    with pytest.raises(errors.Unavailable, match=r"model 'cifar_resnet20' is shut down"):
        asyncio.run(runner.run([{"input": images(1, 0)}]))
    runner.close()  # closing twice is harmless


@pytest.mark.parametrize(("spinning", "entry"), [(False, "0"), (True, "1")])
def test_spinning_is_a_session_option(resnet: ModelConfig, spinning: bool, entry: str) -> None:
    runner = ModelRunner(resnet, spinning=spinning)
    try:
        options = runner.sessions[0].get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
    finally:
        runner.close()


def test_padded_shapes_return_exactly_the_batch(resnet: ModelConfig, reference: ort.InferenceSession) -> None:
    """What a CUDA runner does (asked for here: the CPU runs exact sizes): a batch of 3 runs as 16."""
    runner = ModelRunner(resnet, batch_shapes="padded")
    try:
        # cifar_resnet20: preferred 1, 16, 64; max 256.
        assert runner.shapes.buckets == (1, 16, 64, 256)
        assert [runner.shapes.padded(n) for n in (1, 3, 16, 17, 200)] == [1, 16, 16, 64, 256]
        x = np.random.default_rng(5).standard_normal((3, *resnet.inputs[0].shape), dtype=np.float32)
        result = asyncio.run(runner.run([{resnet.inputs[0].name: x}]))
        (expected,) = reference.run(None, {resnet.inputs[0].name: x})
        np.testing.assert_allclose(result.outputs[resnet.outputs[0].name], expected, rtol=1e-5, atol=1e-5)
    finally:
        runner.close()


def test_with_padded_shapes_no_session_ever_sees_a_second_shape(
    resnet: ModelConfig, reference: ort.InferenceSession
) -> None:
    runner = ModelRunner(resnet, batch_shapes="padded", instances=2)
    try:
        assert len(runner.sessions) == 2 * 4  # two instances, four buckets each
        spy = SessionSpy(runner)
        warmed = asyncio.run(runner.warmup([1, 16, 64]))
        assert sorted(warmed) == [1, 16, 64, 256]
        batches = [images(size, seed=size) for size in (1, 2, 5, 16, 17, 64, 65, 3, 1, 40)]

        async def main() -> list[Any]:
            return await asyncio.gather(*(runner.run([{"input": x}]) for x in batches))

        for x, result in zip(batches, asyncio.run(main()), strict=True):
            (expected,) = reference.run(["logits"], {"input": x})
            np.testing.assert_allclose(result.outputs["logits"], expected, rtol=1e-5, atol=1e-5)
        assert all(len(set(sizes)) == 1 for sizes in spy.sizes.values()), spy.sizes
        assert sorted(sizes[0] for sizes in spy.sizes.values()) == [1, 1, 16, 16, 64, 64, 256, 256]
        assert spy.most_at_once == 1
    finally:
        runner.close()


@pytest.mark.parametrize(
    ("policy", "provider", "buckets"),
    [
        ("auto", CUDA, (1, 8, 32)),
        ("auto", CPU, ()),
        ("exact", CUDA, ()),
        ("padded", CPU, (1, 8, 32)),
    ],
)
def test_batch_shapes_policy(policy: str, provider: str, buckets: tuple[int, ...]) -> None:
    shapes = BatchShapes.decide(policy, provider, 32, (8, 1, 8))
    assert shapes.buckets == buckets and shapes.preferred == (1, 8)
    assert shapes.padded(5) == (8 if buckets else 5)
    with pytest.raises(ValueError, match="batch shapes 'tiny': expected one of auto, exact, padded"):
        BatchShapes.decide("tiny", provider, 32, ())


@pytest.mark.skipif(not CUDA_WORKS_HERE, reason="needs a usable GPU: the CPU runs exact batch sizes")
def test_a_cuda_runner_pads_by_default(resnet: ModelConfig) -> None:
    runner = ModelRunner(resnet, device="cuda", instances=None)
    try:
        assert runner.provider == CUDA and runner.shapes.policy == "padded"
        assert runner.shapes.buckets == (1, 16, 64, 256)
        assert runner.instances == 2 and len(runner.sessions) == 2 * 4
        asyncio.run(runner.run([{"input": images(3, seed=3)}]))
        assert runner.pinned_buffers >= 1  # the input buffer of the session that ran, page-locked
    finally:
        runner.close()


def test_instances_auto_is_one_on_the_cpu(resnet: ModelConfig) -> None:
    runner = ModelRunner(resnet, device="cpu", instances=None)
    try:
        assert runner.instances == 1 and len(runner.sessions) == 1
    finally:
        runner.close()


def test_cuda_provider_options_from_the_settings() -> None:
    assert devices.cuda_provider_options(Settings()) == {
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "arena_extend_strategy": "kSameAsRequested",
        "do_copy_in_default_stream": "1",
        "use_tf32": "0",
    }
    tuned = Settings(
        cuda_conv_algo_search="heuristic",
        cuda_memory_limit=8 << 30,
        cuda_arena_strategy="next_power_of_two",
        cuda_copy_stream="separate",
        cuda_tf32="on",
    )
    assert devices.cuda_provider_options(tuned) == {
        "cudnn_conv_algo_search": "HEURISTIC",
        "arena_extend_strategy": "kNextPowerOfTwo",
        "do_copy_in_default_stream": "0",
        "use_tf32": "1",
        "gpu_mem_limit": str(8 << 30),
    }


def test_cuda_options_do_not_reach_a_cpu_session(resnet: ModelConfig) -> None:
    runner = ModelRunner(resnet, device="cpu", cuda_options=devices.cuda_provider_options(Settings()))
    try:
        assert runner.provider == CPU and runner.provider_options == {} and runner.provider_options_label() == ""
    finally:
        runner.close()


@pytest.mark.skipif(not CUDA_WORKS_HERE, reason="needs a usable GPU: what a CUDA session reports of its options")
def test_a_cuda_session_reports_the_options_it_got(resnet: ModelConfig) -> None:
    options = devices.cuda_provider_options(Settings(cuda_conv_algo_search="heuristic", cuda_memory_limit=1 << 30))
    runner = ModelRunner(resnet, device="cuda", cuda_options=options)
    try:
        assert runner.provider_options["cudnn_conv_algo_search"] == "HEURISTIC"
        assert runner.provider_options["gpu_mem_limit"] == str(1 << 30)
    finally:
        runner.close()


def test_several_requests_run_as_one_batch_joined_in_the_worker(
    runner: ModelRunner, reference: ort.InferenceSession
) -> None:
    spy = SessionSpy(runner)
    parts = [{"input": images(size, seed=size)} for size in (3, 1, 4)]
    result = asyncio.run(runner.run(parts))
    (expected,) = reference.run(["logits"], {"input": np.concatenate([p["input"] for p in parts])})
    np.testing.assert_allclose(result.outputs["logits"], expected, rtol=0, atol=1e-6)
    assert sorted(size for sizes in spy.sizes.values() for size in sizes) == [8]  # one run of all 8


def test_outputs_outlive_the_buffers_they_were_computed_from(resnet: ModelConfig) -> None:
    """Input buffers are reused batch after batch; a batch's outputs must not change when the next
    batch runs on the same session."""
    runner = ModelRunner(resnet, device="cpu", instances=1)
    try:
        first = asyncio.run(runner.run([{"input": images(4, seed=1)}])).outputs["logits"]
        kept = first.copy()
        asyncio.run(runner.run([{"input": images(4, seed=2)}]))
        np.testing.assert_array_equal(first, kept)
        assert runner.pinned_buffers == 0  # page-locking is for CUDA's copies only
    finally:
        runner.close()


def test_cuda_graphs_are_refused_on_the_cpu(resnet: ModelConfig) -> None:
    with pytest.raises(
        RuntimeUnavailable,
        match=r"--cuda-graphs: cifar_resnet20 runs on CPUExecutionProvider; CUDA graphs need the CUDA provider",
    ):
        ModelRunner(resnet, device="cpu", cuda_graphs=True)


@pytest.mark.skipif(not CUDA_WORKS_HERE, reason="needs a usable GPU: CUDA graphs are captured on the device")
def test_cuda_graphs_replay_the_same_results(resnet: ModelConfig, reference: ort.InferenceSession) -> None:
    runner = ModelRunner(resnet, device="cuda", cuda_graphs=True, cuda_options={"cudnn_conv_algo_search": "DEFAULT"})
    try:
        assert runner.provider_options["enable_cuda_graph"] == "1"
        asyncio.run(runner.warmup([1, 16, 64]))  # captures one graph per bucket session
        for size in (1, 3, 16, 20):
            x = images(size, seed=size)
            (expected,) = reference.run(["logits"], {"input": x})
            result = asyncio.run(runner.run([{"input": x}]))
            np.testing.assert_allclose(result.outputs["logits"], expected, rtol=1e-3, atol=1e-3)
    finally:
        runner.close()


def test_inline_runs_give_what_the_worker_thread_gives(runner: ModelRunner) -> None:
    x = images(1, seed=9)
    threaded = asyncio.run(runner.run([{"input": x}]))
    on_an_instance = runner.run_inline([{"input": x}])
    runner.prepare_inline()  # its own session, with one intra-op thread
    on_its_own = runner.run_inline([{"input": x}])
    assert on_an_instance is not None and on_its_own is not None
    np.testing.assert_array_equal(on_an_instance.outputs["logits"], threaded.outputs["logits"])
    np.testing.assert_array_equal(on_its_own.outputs["logits"], threaded.outputs["logits"])
    assert on_its_own.copy_seconds is None  # run from the request's own array, nothing copied
    assert asyncio.run(runner.lone_compute_seconds()) > 0


def test_inline_takes_one_item_only(runner: ModelRunner) -> None:
    # The inline decision is measured for one item: a larger batch is left to a worker thread.
    assert runner.run_inline([{"input": images(2, seed=1)}]) is None
    assert runner.run_inline([{"input": images(1, seed=1)}, {"input": images(1, seed=2)}]) is None
    runner.prepare_inline()
    assert runner.run_inline([{"input": images(2, seed=1)}]) is None


def test_inline_does_nothing_while_every_instance_is_busy(runner: ModelRunner) -> None:
    # Hold both instances as two running batches would (through the runner's own idle queue).
    held = [runner._idle.get_nowait() for _ in range(runner.instances)]
    try:
        assert runner.run_inline([{"input": images(1, seed=1)}]) is None
        runner.prepare_inline()  # its own session is never held by a worker thread
        assert runner.run_inline([{"input": images(1, seed=1)}]) is not None
    finally:
        for instance in held:
            runner._idle.put(instance)
    assert runner.run_inline([{"input": images(1, seed=1)}]) is not None
