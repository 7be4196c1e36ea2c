"""Data a whole test run builds once, however many pytest-xdist workers ask for it.

Each xdist worker has its own session, so a session-scoped fixture runs once per worker. What is
expensive to build and read-only afterwards (the exported repositories) is built by the first
worker that asks, under a file lock in the run's shared temporary folder, and the others wait for
it and read the same files. Without xdist the run has one session, and this is a plain mkdtemp.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name`` filled by ``build(folder)`` once per run; shared by every worker."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = factory.mktemp(name)
        build(folder)
        return folder
    # Each worker's base folder is .../pytest-N/popen-gwK: its parent belongs to this run only.
    shared = factory.getbasetemp().parent
    folder = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the holder dies
        done = shared / f"{name}.complete"  # beside the folder: a repository holds only entries
        if not done.exists():
            if folder.exists():  # a worker died half way: start again
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder
