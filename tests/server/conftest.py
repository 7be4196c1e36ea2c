"""Fixtures for the server tests: a small exported repository, and a running server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ServerProcess, start_server, wait_ready


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory: pytest.TempPathFactory, exported_repo: Path) -> Path:
    """lenet5 (trained) beside tests/conftest.py's cifar_resnet20 and narrow AlphaGo policy net."""
    from builders.export import export

    repo = tmp_path_factory.mktemp("repo")
    for entry in exported_repo.iterdir():
        shutil.copytree(entry, repo / entry.name)
    export("lenet5", repo)
    return repo


@pytest.fixture(scope="module")
def server(small_repo: Path) -> Iterator[ServerProcess]:
    """One server for a test module; tests that stop or drain a server start their own."""
    proc = start_server(small_repo, "--max-queue-delay-us", "20000")
    try:
        wait_ready(proc.grpc_address)
        yield proc
    finally:
        proc.terminate()
