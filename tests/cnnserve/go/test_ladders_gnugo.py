"""The ladder reading against GNU Go's ``ladder_attack`` on random positions: for every group
with two liberties, we find a ladder capture exactly when GNU Go does.

GNU Go answers 0 (no ladder), 1 (captured), 2 (captured through a ko the attacker takes first)
or 3 (only if the attacker wins a ko it must retake): a reading under simple ko without ko
threats, as ours is, captures in cases 1 and 2 and not in 3."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
from goreference import ladders
from gtpgame import GtpProcess, gnugo_path

from cnnserve.go.board import BLACK, Board, opponent
from cnnserve.go.coords import to_gtp
from cnnserve.go.features import FEATURES, planes

POSITIONS = 200
LADDER_CAPTURE = next(f.start for f in FEATURES if f.name == "ladder_capture")


@pytest.fixture(scope="module")
def gnugo() -> Iterator[GtpProcess]:
    engine = GtpProcess([gnugo_path(), "--mode", "gtp"], "GNU Go")
    yield engine
    engine.close()


def random_game(seed: int, gnugo: GtpProcess) -> tuple[Board, int]:
    """A game of random legal moves that fill no eye, played on our board and GNU Go's."""
    rng = random.Random(seed)
    board, color = Board(), BLACK
    gnugo.send("clear_board")
    for _ in range(rng.randint(30, 220)):
        choices = [p for p in board.legal_points(color) if not board.is_eye(color, p)]
        p = rng.choice(choices) if choices else None
        board.play(color, p)
        gnugo.send(f"play {'black' if color == BLACK else 'white'} {to_gtp(p)}")
        color = opponent(color)
    return board, color


def test_ladder_captures_agree_with_gnugo(gnugo: GtpProcess) -> None:
    compared = {"0": 0, "1": 0, "2": 0, "3": 0}
    for seed in range(POSITIONS):
        board, to_move = random_game(seed, gnugo)
        lit = set(np.flatnonzero(planes(board, to_move)[LADDER_CAPTURE]).tolist())
        explained: set[int] = set()
        for group in board.groups()[1]:
            if len(group.liberties) != 2:
                continue
            prey, attacker = min(group.stones), opponent(group.color)
            code = gnugo.send(f"ladder_attack {to_gtp(prey)}").split()[0]
            compared[code] += 1
            ours = [
                p
                for p in group.liberties
                if board.is_legal(attacker, p) and ladders.is_ladder_capture(board, attacker, p, prey)
            ]
            where = f"seed {seed}: the group at {to_gtp(prey)}, GNU Go's ladder_attack {code}"
            assert bool(ours) == (code in ("1", "2")), f"{where}, ours {[to_gtp(p) for p in ours]}\n{board.to_text()}"
            if attacker == to_move:
                explained.update(ours)
        # The plane lights exactly the captures of the side to move found above.
        assert lit == explained, f"seed {seed}"
    assert compared["0"] > 50 and compared["1"] > 50, compared  # both answers were really compared
