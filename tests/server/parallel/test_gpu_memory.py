"""The supervisor's GPU memory check: the estimate and the decision (the NVML reading needs a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnserve.server.parallel.gpu_memory import ARENA_FACTOR, CONTEXT_BYTES, estimate, fitting_workers, free_bytes
from cnnserve.server.runtime import devices
from cnnserve.server.settings import GIB, Settings


def onnx_bytes(repo: Path, name: str) -> int:
    return (repo / name / "1" / "model.onnx").stat().st_size


def test_the_estimate_counts_every_session_of_a_worker(small_repo: Path) -> None:
    # CUDA's defaults: two instances, and one session per padded size (lenet5 and cifar_resnet20
    # prefer 1, 16 and 64, and the maximum 256 is a size too): 8 sessions each.
    need = estimate(Settings(repo=str(small_repo), models=("lenet5", "cifar_resnet20")))
    weights = onnx_bytes(small_repo, "lenet5") + onnx_bytes(small_repo, "cifar_resnet20")
    assert need.sessions == 16
    assert need.per_worker == pytest.approx(CONTEXT_BYTES + 8 * ARENA_FACTOR * weights, abs=16)
    lean = estimate(Settings(repo=str(small_repo), models=("lenet5",), instances=1, batch_shapes="exact"))
    assert lean.sessions == 1
    assert lean.per_worker == pytest.approx(CONTEXT_BYTES + ARENA_FACTOR * onnx_bytes(small_repo, "lenet5"), abs=1)
    assert "1 CUDA sessions" in lean.describe()


def test_workers_that_do_not_fit_are_refused_before_any_starts() -> None:
    assert fitting_workers(None, 4, 3 * GIB, 10 * GIB) == (3, None)  # auto: lowered to what fits
    assert fitting_workers(2, 4, 3 * GIB, 10 * GIB) == (2, None)
    assert fitting_workers(4, 4, 3 * GIB, 10 * GIB) == (4, "--workers 4 needs about 12.0 GiB of GPU memory")
    assert fitting_workers(None, 4, 3 * GIB, 2 * GIB) == (0, "one worker needs about 3.0 GiB of GPU memory")


def test_free_memory_is_unknown_without_nvml() -> None:
    if devices.gpu_present():
        pytest.skip("a GPU is present: NVML answers")
    assert free_bytes() is None
