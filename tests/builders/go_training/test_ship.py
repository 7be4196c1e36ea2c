"""Shipping a run: float16 weights, committed held-out games and a provenance that reproduces;
export uses shipped weights by default, only for the network shape they fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gogames import random_record

from cnnserve.builders import export as export_module
from cnnserve.builders.export import export
from cnnserve.builders.go_training import records
from cnnserve.builders.go_training.batches import Positions
from cnnserve.builders.go_training.loop import Settings, Trainer
from cnnserve.builders.go_training.ship import NAME, committed_scores, ship
from cnnserve.builders.shipped import shipped


@pytest.fixture(scope="module")
def shipped_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ship")
    data = root / "data"
    data.mkdir()
    for seed in range(20):
        (data / f"game-{seed:02}.sgf").write_text(random_record(seed, 60))
    collection = records.read([data])
    training, held_out = collection.split(0.3)
    settings = Settings(k=4, batch=32, positions=192, eval_every=96, eval_positions=64, held_out_fraction=0.3)
    Trainer(settings, Positions(training), Positions(held_out), root / "run").run(progress=False)
    ship(root / "run", [data], root / "trained")
    return root / "trained"


def test_the_shipped_files_and_their_provenance(shipped_folder: Path) -> None:
    found = shipped(NAME, shipped_folder)
    assert found is not None and found.options == {"k": 4}
    state = torch.load(found.weights, weights_only=True)
    assert {t.dtype for t in state.values()} == {torch.float16}
    p = found.provenance
    assert p["data"]["training_games"] + p["data"]["held_out_games"] == 20
    assert p["training"]["positions_seen"] == 192 and p["training"]["steps"] == 6
    assert [h["positions"] for h in p["history"]] == [96, 192]
    committed = sorted(found.held_out.glob("*.sgf"))
    assert committed and p["committed"]["games"] == [c.name for c in committed]
    # The committed games are held-out games, and enough of them.
    held_keys = {g.key for g in records.read([shipped_folder.parent / "data"]).split(0.3)[1]}
    assert all(records.read_game(c.read_text(), c.name).key in held_keys for c in committed)
    assert p["committed"]["positions"] == 60 * len(committed) and p["committed"]["positions"] >= 60


def test_the_recorded_accuracy_reproduces(shipped_folder: Path) -> None:
    found = shipped(NAME, shipped_folder)
    assert found is not None
    scores, positions = committed_scores(found, 4)
    assert positions == found.provenance["committed"]["positions"]
    assert round(scores.top1, 6) == found.provenance["committed"]["top1"]
    assert round(scores.top5, 6) == found.provenance["committed"]["top5"]


def test_export_uses_shipped_weights_unless_told_or_the_shape_differs(
    shipped_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "shipped", lambda name: shipped(name, shipped_folder))
    cases = {"default": {}, "random": {"random_weights": True}, "k8": {"options": {"k": 8}}}
    for name, kwargs in cases.items():
        export("alphago_policy", tmp_path, entry_name=name, **kwargs)  # type: ignore[arg-type]
    weights = {n: json.loads((tmp_path / n / "config.json").read_text())["weights"] for n in cases}
    assert weights["default"]["kind"] == "shipped" and weights["default"]["trained"] is True
    assert weights["default"]["source"].startswith("shipped with cnnserve (alphago_policy.pt): k=4")
    assert json.loads((tmp_path / "default" / "config.json").read_text())["options"] == {"k": 4}
    assert weights["random"]["kind"] == "random" and weights["random"]["trained"] is False
    assert weights["k8"]["kind"] == "random"  # no shipped weights have that shape
