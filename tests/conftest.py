"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import copy_repository
from inprocess import InProcessServer, in_process
from sessiondata import built_once

# pytest-xdist runs one worker per core (`-n auto`). PyTorch's OpenMP threads (one per core in
# each worker, and in what a worker starts) would spin against each other's workers for the same
# cores; one thread each keeps every core busy with work. Set before any test module imports torch.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def exported_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real repository written by the exporter once per run: ``cifar_resnet20`` (a classifier
    with labels.txt) and ``alphago_policy`` with k=16 (a policy net, no labels).

    Shared by every xdist worker: treat it as read-only; copy an entry (shutil.copytree) before
    breaking it.
    """
    from cnnserve.builders.export import export

    def build(repo: Path) -> None:
        export("cifar_resnet20", repo)
        export("alphago_policy", repo, options={"k": 16})

    return built_once(tmp_path_factory, "exported", build)


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory: pytest.TempPathFactory, exported_repo: Path) -> Path:
    """lenet5 (trained) beside cifar_resnet20 and the narrow AlphaGo policy net; read-only, as
    ``exported_repo``."""
    from cnnserve.builders.export import export

    def build(repo: Path) -> None:
        copy_repository(exported_repo, repo)
        export("lenet5", repo)

    return built_once(tmp_path_factory, "repo", build)


@pytest.fixture(scope="session")
def repo_with_broken(small_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small repository plus an entry that cannot load (its ONNX file is garbage)."""
    repo = copy_repository(small_repo, tmp_path_factory.mktemp("repo_with_broken"))
    shutil.copytree(small_repo / "cifar_resnet20", repo / "broken")
    config = (repo / "broken" / "config.json").read_text().replace('"name": "cifar_resnet20"', '"name": "broken"')
    (repo / "broken" / "config.json").write_text(config)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an ONNX file")
    return repo


@pytest.fixture(scope="module")
def server(small_repo: Path) -> Iterator[InProcessServer]:
    """One server for a test module, in the test's own process (only RPCs reach it); tests of
    signals, exit statuses, workers or its output start a ``cnnserve serve`` subprocess."""
    with in_process(small_repo, max_queue_delay_us=20000) as served:
        yield served
