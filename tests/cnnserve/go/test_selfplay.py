"""``cnnserve go-data``: GNU Go against itself, with real GNU Go processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import cli

from cnnserve.go import position, sgf
from cnnserve.go.board import BLACK, WHITE
from cnnserve.go.coords import from_gtp
from cnnserve.go.gtp_controller import GtpEngine, find_gnugo
from cnnserve.go.selfplay import SelfPlay, game_path, run

GNUGO = find_gnugo()
if GNUGO is None:  # pragma: no cover - `make test` installs it
    raise AssertionError("GNU Go is not installed: `make system-packages` installs Debian's gnugo")
SHORT = SelfPlay(max_moves=12, opening=4)


def _stones(engine: GtpEngine, color: str) -> set[int]:
    return {p for v in engine.send(f"list_stones {color}").split() if (p := from_gtp(v)) is not None}


def test_games_are_sgf_that_our_parser_and_gnugo_replay_alike(tmp_path: Path) -> None:
    settings = SelfPlay(max_moves=16, opening=4, candidates=True)
    manifest = run(tmp_path, range(1, 3), settings, gnugo=GNUGO, workers=2, progress=False)
    assert manifest["games"] == 2 and manifest["players"] == {next(iter(manifest["players"])): 2}
    assert str(next(iter(manifest["players"]))).startswith("GNU Go ")
    total = 0
    with GtpEngine([GNUGO, "--mode", "gtp"], "GNU Go") as referee:
        for seed in (1, 2):
            text = game_path(tmp_path, seed).read_text()
            record = sgf.parse(text)
            root = record.root
            assert root["SZ"] == ["19"] and root["GN"] == [f"seed {seed}"] and "level 0" in root["PB"][0]
            assert root["RE"][0][:2] in ("B+", "W+") or root["RE"] == ["0"]
            moves = [n for n in record.nodes[1:] if "B" in n or "W" in n]
            assert 0 < len(moves) <= 16 and "cut at 16 moves" in root["GC"][0]
            total += len(moves)
            # GNU Go's candidates before each move, with values; the played move is among them
            # past the opening, where GNU Go chose it.
            assert all(n["XC"] and all(":" in c for c in n["XC"]) for n in moves)
            # Our replay (which enforces the rules) and GNU Go's `loadsgf` reach the same board.
            ours = position.from_sgf(text).board
            referee.send(f"loadsgf {game_path(tmp_path, seed)}")
            assert _stones(referee, "black") == {p for p in range(361) if ours.stones[p] == BLACK}
            assert _stones(referee, "white") == {p for p in range(361) if ours.stones[p] == WHITE}
    assert manifest["positions"] == total


def test_the_same_seeds_play_the_same_games_and_a_run_resumes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    run(first, range(5, 7), SHORT, gnugo=GNUGO, workers=1, progress=False)
    run(second, range(5, 8), SHORT, gnugo=GNUGO, workers=2, progress=False)  # another order, other processes
    for seed in (5, 6):
        assert game_path(first, seed).read_bytes() == game_path(second, seed).read_bytes()
    assert game_path(second, 5).read_bytes() != game_path(second, 6).read_bytes()  # the seed varies the game

    kept = {seed: game_path(first, seed).stat().st_mtime_ns for seed in (5, 6)}
    manifest = run(first, range(5, 8), SHORT, gnugo=GNUGO, workers=2, progress=False)
    assert {seed: game_path(first, seed).stat().st_mtime_ns for seed in (5, 6)} == kept  # not played again
    assert game_path(first, 7).read_bytes() == game_path(second, 7).read_bytes()
    assert manifest["games"] == 3 and sorted(p.name for p in first.iterdir()) == [
        "game-00000005.sgf", "game-00000006.sgf", "game-00000007.sgf", "manifest.json",
    ]  # fmt: skip


def test_the_command_reports_and_refuses_bad_settings(tmp_path: Path) -> None:
    done = cli("go-data", str(tmp_path), "--games", "1", "--max-moves", "8", "--opening", "2", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{tmp_path}: 1 games, 8 positions"
    assert "1/1 games" in done.stderr  # the progress bar's last state
    for flags, message in [
        (["--level", "11"], "--level 0 to 10"),
        (["--workers", "many"], "--workers: expected a number or auto, got 'many'"),
        (["--gnugo", str(tmp_path / "nothing")], "not an executable file"),
    ]:
        done = cli("go-data", str(tmp_path / "x"), "--games", "1", *flags)
        assert done.returncode == 1 and message in done.stderr, done.stderr


@pytest.mark.parametrize("vertex", ["A1", "T19", "K10", "pass"])
def test_vertices_become_sgf_points(vertex: str) -> None:
    from cnnserve.go.coords import to_sgf
    from cnnserve.go.selfplay import vertex_to_sgf

    p = from_gtp(vertex)
    assert vertex_to_sgf(vertex, 19) == ("" if p is None else to_sgf(p))
