"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def exported_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real repository written by the exporter once per session (about 5 s): ``cifar_resnet20``
    (a classifier with labels.txt) and ``alphago_policy`` with k=16 (a policy net, no labels).

    Treat it as read-only; copy an entry (shutil.copytree) before breaking it.
    """
    from builders.export import export

    repo = tmp_path_factory.mktemp("exported")
    export("cifar_resnet20", repo)
    export("alphago_policy", repo, options={"k": 16})
    return repo
