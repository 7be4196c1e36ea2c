"""How a model's sessions are built from its config.json and the server's settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from inprocess import in_process


def _lenet5_with(small_repo: Path, tmp_path: Path, **fields: object) -> Path:
    shutil.copytree(small_repo / "lenet5", tmp_path / "lenet5")
    config = tmp_path / "lenet5" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **fields}))
    return tmp_path


@pytest.mark.parametrize(("setting", "instances"), [(None, 2), (1, 1), (3, 3)])
def test_instance_group_counts_unless_instances_is_given(
    small_repo: Path, tmp_path: Path, setting: int | None, instances: int
) -> None:
    # config.json's instance_group is the model's own count; an explicit --instances is for every
    # model and wins; --instances auto (None) takes the model's.
    repo = _lenet5_with(small_repo, tmp_path, instance_group=[{"count": 2, "kind": "KIND_AUTO"}])
    with in_process(repo, instances=setting) as served:
        model = served.server.models.models["lenet5"]
        assert model.runner is not None and model.runner.instances == instances
        assert model.batcher is not None


def test_preferred_batch_sizes_setting_replaces_the_models(small_repo: Path, tmp_path: Path) -> None:
    repo = _lenet5_with(small_repo, tmp_path)
    with in_process(repo, preferred_batch_sizes=(), max_batch_size=32) as served:
        config = served.server.models.models["lenet5"].config
        assert config is not None and (config.max_batch_size, config.preferred_batch_sizes) == (32, ())
    with in_process(repo, preferred_batch_sizes=(4, 64), max_batch_size=32) as served:
        config = served.server.models.models["lenet5"].config
        assert config is not None and config.preferred_batch_sizes == (4, 32)  # clamped to the maximum
