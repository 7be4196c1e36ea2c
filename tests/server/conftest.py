"""Fixtures for the server tests: a small exported repository, and a running server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ServerProcess, start_server, wait_ready


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lenet5 (trained), cifar_resnet20 and a narrow AlphaGo policy net: small enough for CI."""
    from builders.export import export

    repo = tmp_path_factory.mktemp("repo")
    export("lenet5", repo)
    export("cifar_resnet20", repo)
    export("alphago_policy", repo, options={"k": 16})
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
