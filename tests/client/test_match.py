"""``cnnserve match``: real games between ``cnnserve gtp`` on a server and GNU Go, refereed by GNU
Go; engines that break the rules or resign; the tally's statistics."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from harness import cli
from inprocess import InProcessServer

from cnnserve.client.match import Outcome, elo, tally, wilson
from cnnserve.go import position
from cnnserve.go.board import BLACK, WHITE
from cnnserve.go.coords import from_gtp
from cnnserve.go.gtp_controller import GtpEngine, find_gnugo

GNUGO = find_gnugo()
if GNUGO is None:  # pragma: no cover - `make test` installs it
    raise AssertionError("GNU Go is not installed: `make system-packages` installs Debian's gnugo")
LEVEL_0 = f"{GNUGO} --mode gtp --level 0"

# A GTP engine that answers every genmove with argv[1] ("A1": legal once, then occupied; "resign").
STUBBORN = r"""
import sys
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    reply = {"name": "stubborn", "version": "1", "genmove": sys.argv[1]}.get(words[0], "")
    print("= " + reply + "\n", flush=True)
    if words[0] == "quit":
        break
"""


def stubborn(tmp_path: Path, move: str) -> str:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    return f"{sys.executable} {script} {move}"


def test_two_whole_games_against_gnugo_scored_recorded_and_resumed(server: InProcessServer, tmp_path: Path) -> None:
    out = tmp_path / "match"
    args = ["match", "--server", server.grpc_address, "--opponent", LEVEL_0, "--games", "2", "--parallel", "2",
            "--max-moves", "1000", "--out", str(out)]  # fmt: skip
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((x["game"], x["engine_color"]) for x in lines) == [(1, "B"), (2, "W")]
    with GtpEngine([GNUGO, "--mode", "gtp"], "GNU Go") as gnugo:
        for line in lines:
            assert line["reason"] == "two passes"  # played to the end, not cut
            assert line["result"][:2] in ("B+", "W+") or line["result"] == "0"
            text = (out / line["file"]).read_text()
            assert f"RE[{line['result']}]" in text and "PB[" in text and "PW[" in text
            # The record replays under our rules and GNU Go's to the same stones.
            ours = position.from_sgf(text).board
            assert len(ours.moves) == line["moves"] and ours.moves[-1].point is None
            gnugo.send(f"loadsgf {out / line['file']}")
            for colour, name in ((BLACK, "black"), (WHITE, "white")):
                stones = {from_gtp(v) for v in gnugo.send(f"list_stones {name}").split()}
                assert stones == {p for p in range(361) if ours.stones[p] == colour}
    assert "games  wins  losses" in done.stdout and "two passes 2" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["games"] == 2 and summary["wins"] + summary["losses"] + summary["draws"] == 2

    again = cli(*args)  # nothing left to play: the same tally from the records
    assert again.returncode == 0 and again.stderr == ""
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_an_illegal_move_forfeits_and_a_resignation_ends_the_game(tmp_path: Path) -> None:
    out = tmp_path / "illegal"
    done = cli("match", "--engine", stubborn(tmp_path, "A1"), "--opponent", LEVEL_0, "--games", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = {x["game"]: x for x in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert lines[1]["result"] == "W+F" and lines[1]["reason"].startswith("illegal move black A1")
    assert lines[2]["result"] == "B+F" and lines[2]["reason"].startswith("illegal move white A1")
    assert "illegal move 2" in done.stdout

    out = tmp_path / "resign"
    done = cli("match", "--engine", stubborn(tmp_path, "resign"), "--opponent", LEVEL_0, "--games", "2",
               "--out", str(out))  # fmt: skip
    lines = {x["game"]: x for x in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert lines[1]["result"] == "W+R" and lines[1]["moves"] == 0
    assert lines[2]["result"] == "B+R" and lines[2]["moves"] == 1  # GNU Go opened as black


def test_an_engine_that_cannot_start_stops_the_match_with_a_message(tmp_path: Path) -> None:
    done = cli("match", "--engine", str(tmp_path / "missing"), "--opponent", LEVEL_0, "--out", str(tmp_path / "m"))
    assert done.returncode != 0 and "the match stopped" in done.stderr


def test_wilson_interval_and_elo() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(20, 40)
    assert low == pytest.approx(0.3520, abs=1e-4) and high == pytest.approx(0.6480, abs=1e-4)
    low, high = wilson(40, 40)
    assert high == 1.0 and low == pytest.approx(0.9124, abs=1e-4)
    assert elo(0.5) == 0 and elo(0.76) == pytest.approx(200, abs=1) and elo(1.0) == math.inf


def test_tally_counts_by_colour_draws_and_reasons() -> None:
    def game(n: int, colour: str, result: str, reason: str = "two passes") -> Outcome:
        return Outcome(n, colour, result, reason, 200, "a", "b", 1.0)

    t = tally([game(1, "B", "B+3.5"), game(2, "W", "B+0.5"), game(3, "B", "0"), game(4, "W", "W+F", "illegal move x")])
    assert (t.wins, t.losses, t.draws) == (2, 1, 1)
    assert (t.wins_as_black, t.games_as_black, t.wins_as_white, t.games_as_white) == (1, 2, 1, 2)
    assert t.win_rate == 2.5 / 4
    assert t.reasons == {"two passes": 3, "illegal move": 1}
