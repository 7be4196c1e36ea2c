"""Training: steps lower the loss, held-out games never reach a training batch, a run resumes
where it stopped, and the checkpoint is one that export takes and the server serves."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from gogames import random_record
from inprocess import in_process

from cnnserve.builders.export import export
from cnnserve.builders.go_training import records
from cnnserve.builders.go_training.batches import Positions
from cnnserve.builders.go_training.loop import CHECKPOINT, HISTORY, Settings, Trainer, TrainingError, evaluate, logits
from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go import features, position
from cnnserve.go.coords import POINTS

GAME = Path(__file__).resolve().parents[2] / "data" / "gnugo-selfplay.sgf"
TINY = Settings(k=8, batch=16, lr=3e-3, positions=160, eval_every=80, eval_positions=40)


def _games(count: int, moves: int = 40) -> list[records.Game]:
    return [records.read_game(random_record(seed, moves), f"{seed}.sgf") for seed in range(count)]


def test_steps_lower_the_loss_on_what_they_train_on(tmp_path: Path) -> None:
    game = records.read_game(GAME.read_text(), "gnugo.sgf")
    training = Positions([game])
    trainer = Trainer(Settings(k=32, batch=len(training), lr=1e-3, eval_positions=16), training, training, tmp_path)
    everything = np.arange(len(training))
    before = evaluate(trainer.model, training, everything, "cpu").loss
    for _ in range(30):
        trainer.step()
    after = evaluate(trainer.model, training, everything, "cpu").loss
    assert after < before - 0.5, (before, after)


def test_held_out_games_never_reach_a_training_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    games = _games(12)
    training, held_out = games[:9], games[9:]
    seen: list[tuple[str, str]] = []
    original = Positions.example

    def spy(self: Positions, i: int) -> object:
        seen.append((self.games[self.game_of[i]].key, "train" if self.games[0] is training[0] else "held"))
        return original(self, i)

    monkeypatch.setattr(Positions, "example", spy)
    trainer = Trainer(TINY, Positions(training), Positions(held_out), tmp_path)
    trainer.run(progress=False)
    held_keys = {g.key for g in held_out}
    trained_on = {key for key, where in seen if where == "train"}
    assert trained_on and not trained_on & held_keys
    assert {key for key, where in seen if where == "held"} <= held_keys


def test_a_run_checkpoints_records_history_and_resumes(tmp_path: Path) -> None:
    games = _games(6)
    first = Trainer(TINY, Positions(games[:5]), Positions(games[5:]), tmp_path)
    lines = first.run(progress=False)
    assert [line["positions"] for line in lines] == [80, 160]
    assert all(0 <= line["held_out_top1"] <= line["held_out_top5"] <= 1 for line in lines)
    history = [json.loads(x) for x in (tmp_path / HISTORY).read_text().splitlines()]
    assert history == lines
    assert (tmp_path / "history.png").stat().st_size > 0  # redrawn at each evaluation

    more = Settings(**{**TINY.__dict__, "positions": 240})
    second = Trainer(more, Positions(games[:5]), Positions(games[5:]), tmp_path)
    assert second.resume()
    assert second.state.positions == 160 and second.state.steps == 10
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name])
    assert [line["positions"] for line in second.run(progress=False)] == [240]
    assert len((tmp_path / HISTORY).read_text().splitlines()) == 3

    # The network and the split are fixed for a run's folder.
    other = Trainer(Settings(**{**TINY.__dict__, "k": 16}), Positions(games[:5]), Positions(games[5:]), tmp_path)
    with pytest.raises(TrainingError, match=r"k 8 -> 16"):
        other.resume()


def test_the_checkpoint_exports_and_the_server_serves_its_moves(tmp_path: Path) -> None:
    game = records.read_game(GAME.read_text(), "gnugo.sgf")
    trainer = Trainer(Settings(k=8, batch=60, lr=3e-3, positions=600, eval_every=600, eval_positions=16),
                      Positions([game]), Positions([game]), tmp_path / "run")  # fmt: skip
    trainer.run(progress=False)
    repo = tmp_path / "repo"
    export("alphago_policy", repo, options={"k": 8}, checkpoint=tmp_path / "run" / CHECKPOINT)
    assert json.loads((repo / "alphago_policy" / "config.json").read_text())["weights"]["trained"] is True

    where = position.from_sgf(GAME.read_text(), 60)
    with torch.no_grad():
        x = torch.from_numpy(features.planes(where.board, where.to_move)[None])
        scores = logits(trainer.model.eval(), x)[0].numpy()
    legal = [p for p in range(POINTS) if where.board.is_legal(where.to_move, p)]
    best = max(legal, key=lambda p: scores[p])
    with in_process(repo) as served, grpc.insecure_channel(served.grpc_address) as channel:
        reply = pb_grpc.CnnServeStub(channel).Policy(
            pb.PolicyRequest(model_name="alphago_policy", sgf=GAME.read_text(), move_number=60, top_k=1), timeout=60
        )
    assert reply.trained is True
    assert reply.top_moves[0].index == best
