"""Reading folders of SGF records for training, and the split by game."""

from __future__ import annotations

from pathlib import Path

from gogames import random_record

from cnnserve.builders.go_training import records
from cnnserve.go import position

GAME = Path(__file__).resolve().parents[2] / "data" / "gnugo-selfplay.sgf"


def test_a_record_reads_into_its_moves_and_setup() -> None:
    text = GAME.read_text()
    game = records.read_game(text, "gnugo-selfplay.sgf")
    assert list(game.moves) == position.from_sgf(text).board.moves
    assert len(game.moves) == 120
    assert not any(game.start.stones)

    handicap = records.read_game("(;SZ[19]HA[2]AB[dd][pp];W[dp];B[pd])", "h.sgf")
    assert sum(1 for s in handicap.start.stones if s) == 2 and len(handicap.moves) == 2


def test_bad_records_are_skipped_and_counted_by_reason(tmp_path: Path) -> None:
    (tmp_path / "good.sgf").write_text(random_record(1, 30))
    (tmp_path / "nine.sgf").write_text("(;SZ[9];B[ee])")
    (tmp_path / "broken.sgf").write_text("(;SZ[19];B[dd]")
    (tmp_path / "illegal.sgf").write_text("(;SZ[19];B[dd];W[dd])")
    (tmp_path / "setup.sgf").write_text("(;SZ[19];B[dd];AW[pp];B[pd])")
    (tmp_path / "notes.txt").write_text("not a record")
    collection = records.read([tmp_path])
    assert [g.name for g in collection.games] == [f"{tmp_path.name}/good.sgf"]
    assert dict(collection.skipped) == {
        "board size": 1, "does not parse": 1, "is illegal": 1, "setup stones": 1,
    }  # fmt: skip
    assert collection.positions == 30


def test_the_split_is_by_game_stable_and_keeps_copies_together(tmp_path: Path) -> None:
    for seed in range(40):
        (tmp_path / f"g{seed:02}.sgf").write_text(random_record(seed, 20))
    (tmp_path / "copy-of-g07.sgf").write_text((tmp_path / "g07.sgf").read_text())
    collection = records.read([tmp_path])
    training, held_out = collection.split(0.25)
    assert training and held_out and len(training) + len(held_out) == 41
    assert not {g.key for g in training} & {g.key for g in held_out}
    # The two copies are one game: both on one side.
    sides = {g.name.split("/")[-1]: g in held_out for g in collection.games}
    assert sides["g07.sgf"] == sides["copy-of-g07.sgf"]
    # More games never move an old one across.
    for seed in range(40, 60):
        (tmp_path / f"g{seed:02}.sgf").write_text(random_record(seed, 20))
    _, more_held_out = records.read([tmp_path]).split(0.25)
    assert {g.key for g in held_out} <= {g.key for g in more_held_out}
