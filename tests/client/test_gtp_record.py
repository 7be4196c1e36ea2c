"""The bounded record the GTP engine sends: the board of 8 moves ago as setup, then the last 8
moves. Along long games (captures, passes, a ko, handicap stones, undo) the server's feature
planes from it are those of the whole game at every move, and its size does not grow."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cnnserve.client.gtp_engine import HISTORY, Engine
from cnnserve.go import features
from cnnserve.go.board import BLACK, WHITE, Board
from cnnserve.go.coords import NEIGHBOURS, POINTS
from cnnserve.go.position import from_sgf

MOVES = 400
# Eight moves in the middle, then the edge ko of tests/cnnserve/go/test_board.py: black takes at
# C18, and white may not retake at B18 at once.
OPENING = [
    "play b K10", "play w K12", "play b M10", "play w M12", "play b H10", "play w H12", "play b O10", "play w O12",
    "play b B19", "play w C19", "play b A18", "play w D18", "play b B17", "play w C17", "play w B18", "play b C18",
]  # fmt: skip
# Setup stones ([aa], 4 characters each) on a board that can never be full, 8 moves, the root.
MAX_RECORD = 120 + 4 * POINTS + 6 * HISTORY


class Noise:
    """Random probabilities, seeded: genmove then plays a random legal move that fills no eye."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def __call__(self, board: Board, color: int, record: str) -> list[float]:
        return [self.random.random() for _ in range(POINTS)]


def same_planes(engine: Engine, to_move: int) -> int:
    """Planes from the whole record and from the bounded one are identical; the bounded
    record's size."""
    bounded = engine.policy_record(to_move)
    full = from_sgf(engine.record(), to_move=to_move)
    short = from_sgf(bounded, to_move=to_move)
    assert list(short.board.stones) == list(engine.board.stones) == list(full.board.stones)
    assert np.array_equal(features.planes(full.board, to_move), features.planes(short.board, to_move)), (
        f"planes differ after {len(engine.board.moves)} moves:\n{bounded}"
    )
    return len(bounded)


@pytest.mark.parametrize(("handicap", "seed"), [(0, 1), (4, 2)])
def test_the_bounded_record_gives_the_planes_of_the_whole_game(handicap: int, seed: int) -> None:
    chance = random.Random(seed)
    engine = Engine(Noise(seed))
    if handicap:
        assert engine.handle(f"fixed_handicap {handicap}") is not None
    sizes = [same_planes(engine, WHITE if handicap else BLACK)]
    for line in OPENING:  # 8 moves, then a ko taken at move 16: the record no longer shows the start
        assert engine.handle(line) == "=\n\n", line
        color = WHITE if line.startswith("play b") else BLACK
        sizes.append(same_planes(engine, color))
    assert _retake_is_illegal(engine.board, WHITE, engine.board.moves[-1].point)  # type: ignore[arg-type]
    kos, passes, undos = 1, 0, 0
    while len(engine.board.moves) < MOVES:
        name = "black" if color == BLACK else "white"
        if chance.random() < 0.04:
            reply = engine.handle(f"play {name} pass")
            passes += 1
        else:
            reply = engine.handle(f"genmove {name}")
        assert reply is not None and reply.startswith("="), reply
        if chance.random() < 0.02:  # take a move back and play on from there
            assert engine.handle("undo") == "=\n\n"
            undos += 1
            color = BLACK + WHITE - color
        color = BLACK + WHITE - color
        sizes.append(same_planes(engine, color))
        # A ko (besides the opening's): the retake of the last move's capture is illegal at once.
        last = engine.board.moves[-1].point if engine.board.moves else None
        kos += last is not None and _retake_is_illegal(engine.board, color, last)
    captured = sum(engine.board.prisoners.values())
    assert captured > 20 and passes and undos, (captured, passes, undos)
    print(f"\nhandicap {handicap}: {len(engine.board.moves)} moves, {captured} stones captured, {passes} passes, "
          f"{undos} undos, {kos} kos; records of {min(sizes)} to {max(sizes)} characters "
          f"(the whole game: {len(engine.record())})")  # fmt: skip
    assert max(sizes) <= MAX_RECORD < len(engine.record())


def _retake_is_illegal(board: Board, color: int, last: int) -> bool:
    """Whether ``color`` may not retake a ko next to the last move."""
    for n in NEIGHBOURS[last]:
        if board.stones[n] == 0 and not board.is_legal(color, n):
            reason = board.illegal_reason(color, n)
            if reason is not None and "ko" in reason:
                return True
    return False


def test_the_bounded_record_of_an_empty_board_and_of_a_short_game() -> None:
    engine = Engine(Noise(0))
    assert engine.policy_record(BLACK) == "(;GM[1]FF[4]CA[UTF-8]AP[cnnserve]SZ[19]KM[7.5]PL[B])\n"
    engine.handle("fixed_handicap 2")
    record = engine.policy_record(WHITE)
    assert "HA[2]AB[pd][dp]" in record and record.endswith("PL[W])\n")
    for line in ["play w C3", "play b pass", "play w D3"]:
        engine.handle(line)
    where = from_sgf(engine.policy_record(BLACK))
    assert where.move_number == 3 and where.to_move == BLACK  # short games go whole
    for _ in range(10):
        engine.handle("genmove b")
        engine.handle("genmove w")
    where = from_sgf(engine.policy_record(BLACK))
    assert where.move_number == HISTORY and where.to_move == BLACK and "HA[" not in engine.policy_record(BLACK)
