"""Ship a training run's network with cnnserve: the maintainers' last step, not a user's.

    python -m cnnserve.builders.go_training.ship RUN DATA... [--into builders/trained]

Writes ``alphago_policy.pt`` (the weights in float16), ``alphago_policy-held-out/`` (a few of the
run's held-out games, copied as they are) and ``alphago_policy.json`` (the provenance, with the
accuracy of the float16 weights on those committed games, which a test reproduces). Users who
train their own network export it with ``--checkpoint`` instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnserve.builders.alphago import alphago_policy
from cnnserve.builders.go_training import records
from cnnserve.builders.go_training.batches import Positions
from cnnserve.builders.go_training.loop import CHECKPOINT, Scores, evaluate, read_history
from cnnserve.builders.shipped import TRAINED, Shipped
from cnnserve.go import sgf

NAME = "alphago_policy"
COMMITTED_POSITIONS = 300  # at least this many held-out positions are committed, whole games


def committed_scores(ship: Shipped, k: int) -> tuple[Scores, int]:
    """The shipped weights' scores on the committed held-out games, and how many positions."""
    model = alphago_policy(k=k)
    ship.load_into(model)
    games = [records.read_game(p.read_text(encoding="utf-8"), p.name) for p in sorted(ship.held_out.glob("*.sgf"))]
    positions = Positions(games)
    return evaluate(model, positions, np.arange(len(positions)), "cpu"), len(positions)


def _players(folders: list[Path]) -> dict[str, int]:
    """Games by black player and program, from the records' root nodes."""
    players: Counter[str] = Counter()
    for path, _ in records.sgf_files(folders):
        root = sgf.parse(path.read_text(encoding="utf-8", errors="replace")).root
        players[f"{root.get('PB', ['?'])[0]} / {root.get('AP', ['?'])[0]}"] += 1
    return dict(players)


def ship(run: Path, data: list[Path], into: Path = TRAINED, note: str = "") -> dict[str, Any]:
    saved = torch.load(run / CHECKPOINT, map_location="cpu", weights_only=True)
    settings, state = saved["settings"], saved["state"]
    k = int(settings["k"])
    collection = records.read(data)
    training, held_out = collection.split(settings["held_out_fraction"])
    history = read_history(run)
    last = history[-1]
    if last["positions"] != state["positions"]:
        raise SystemExit(f"{run}: the checkpoint is not at an evaluation ({state['positions']} positions); "
                         "run go-train to its --positions first")  # fmt: skip

    into.mkdir(parents=True, exist_ok=True)
    weights = into / f"{NAME}.pt"
    torch.save({key: value.to(torch.float16) for key, value in saved["state_dict"].items()}, weights)
    folder = into / f"{NAME}-held-out"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    chosen, count = [], 0
    for game in sorted(held_out, key=lambda g: g.name):
        if count >= COMMITTED_POSITIONS:
            break
        chosen.append(game)
        count += sum(1 for m in game.moves if m.point is not None)
    sources = {name: path for path, name in records.sgf_files(data)}
    for game in chosen:
        shutil.copyfile(sources[game.name], folder / Path(game.name).name)

    provenance: dict[str, Any] = {"options": {"k": k}, "data": {}, "held_out": {}, "summary": ""}
    score, positions = committed_scores(Shipped(NAME, weights, provenance), k)
    training_positions = sum(1 for g in training for m in g.moves if m.point is not None)
    held_out_positions = sum(1 for g in held_out for m in g.moves if m.point is not None)
    provenance = {
        "name": NAME,
        "options": {"k": k},
        "summary": (
            f"k={k}, trained on {len(training):,} games of GNU Go self-play "
            f"({training_positions:,} positions); held-out top-1 {last['held_out_top1']:.1%}"
        ),
        "data": {
            "games": len(collection.games),
            "positions": collection.positions,
            "training_games": len(training),
            "training_positions": training_positions,
            "held_out_games": len(held_out),
            "held_out_positions": held_out_positions,
            "skipped": dict(collection.skipped),
            "players": _players(data),
            "split": f"by a hash of each game's moves, {settings['held_out_fraction']:g} held out",
        },
        "training": {
            "command": "cnnserve go-train",
            "settings": settings,
            "steps": state["steps"],
            "positions_seen": state["positions"],
            "data_at_last_resume": state["data"],
            "epochs": round(state["positions"] / max(1, training_positions), 2),
            "hours": round(state["seconds"] / 3600, 2),
            "hardware": f"{platform.machine()}, {os.cpu_count()} cores, {settings['device']}",
            "torch": torch.__version__,
            "note": note,  # what the settings cannot say: a rate lowered on resuming, restarts
        },
        "held_out": {
            "top1": last["held_out_top1"],
            "top5": last["held_out_top5"],
            "loss": last["held_out_loss"],
            "positions": last["held_out_positions"],
            "note": "the run's float32 weights on a fixed sample of the held-out games' positions",
        },
        "committed": {
            "folder": folder.name,
            "games": [Path(g.name).name for g in chosen],
            "positions": positions,
            "top1": round(score.top1, 6),
            "top5": round(score.top5, 6),
            "note": "the shipped float16 weights, computed in float32 on the CPU, on every move of these games",
        },
        "history": [
            {key: line[key] for key in ("positions", "seconds", "train_top1", "held_out_top1", "held_out_top5")}
            for line in history
        ],
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "shipped": time.strftime("%Y-%m-%d"),
    }
    (into / f"{NAME}.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return provenance


def main() -> None:
    parser = argparse.ArgumentParser(description="Ship a go-train run's network with cnnserve.")
    parser.add_argument("run", type=Path, help="the go-train --out folder")
    parser.add_argument("data", nargs="+", type=Path, help="the data folders the run trained on")
    parser.add_argument("--into", type=Path, default=TRAINED, help=f"where to write (default {TRAINED})")
    parser.add_argument("--note", default="", help="how the run went, where its settings do not say (a lowered --lr)")
    args = parser.parse_args()
    provenance = ship(args.run, args.data, args.into, args.note)
    print(json.dumps({key: provenance[key] for key in ("summary", "committed", "sha256")}, indent=2))


if __name__ == "__main__":
    main()
