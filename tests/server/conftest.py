"""Fixtures for the server tests: a small exported repository, and a running server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ServerProcess, copy_repository, serving


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory: pytest.TempPathFactory, exported_repo: Path) -> Path:
    """lenet5 (trained) beside tests/conftest.py's cifar_resnet20 and narrow AlphaGo policy net."""
    from builders.export import export

    repo = copy_repository(exported_repo, tmp_path_factory.mktemp("repo"))
    export("lenet5", repo)
    return repo


@pytest.fixture(scope="module")
def server(small_repo: Path) -> Iterator[ServerProcess]:
    """One server for a test module; tests that stop or drain a server start their own."""
    with serving(small_repo, "--max-queue-delay-us", "20000") as proc:
        yield proc
