"""The C rules and planes (cnnserve/go/_fastgo.c) against the pure-Python reference
(tests/support/goreference/), bit for bit: every move of many games played by both, and the 48 planes of
thousands of positions (random play, fights made to produce ataris, ladders and kos, a GNU Go
self-play game, hand-made ladder and ko cases), for both colours to move."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from goreference import planes as reference
from goreference import rules

from cnnserve.go import position
from cnnserve.go.board import BLACK, EMPTY, WHITE, Board, IllegalMove, Move, opponent
from cnnserve.go.coords import NEIGHBOURS, POINTS, SIZE, point
from cnnserve.go.features import FEATURES, PLANES, planes

DATA = Path(__file__).resolve().parents[2] / "data"
LADDER_PLANES = [f.start for f in FEATURES if f.name in ("ladder_capture", "ladder_escape")]


def choose(board: Board, color: int, rng: random.Random, fight: float) -> int | None:
    """A random legal move that fills no own eye; with probability ``fight`` one next to an
    opponent stone (ataris, captures, ladders and kos come from those); None: a pass."""
    enemy = opponent(color)
    empty = [p for p in range(POINTS) if board.stones[p] == EMPTY]
    near = [p for p in empty if any(board.stones[n] == enemy for n in NEIGHBOURS[p])]
    pool = near if near and rng.random() < fight else empty
    for _ in range(40):
        p = rng.choice(pool)
        if board.is_legal(color, p) and not board.is_eye(color, p):
            return p
    return None


def games(count: int, length: int, fight: float, seed: int) -> Iterator[tuple[Board, Board, int, int | None]]:
    """Each move of ``count`` random games as ``(fast board, reference board, colour, move)``
    before the move is played; both boards are the same position."""
    rng = random.Random(seed)
    for _ in range(count):
        fast, slow = Board(), Board()
        color = BLACK
        for _ in range(rng.randrange(length // 2, length)):
            move = choose(fast, color, rng, fight)
            yield fast, slow, color, move
            assert sorted(fast.play(color, move)) == sorted(rules.play(slow, color, move))
            color = opponent(color)


def describe_difference(fast: np.ndarray, slow: np.ndarray) -> str:
    rows = []
    for f in FEATURES:
        for k in range(f.count):
            plane = f.start + k
            diff = np.flatnonzero(fast[plane] != slow[plane])
            if diff.size:
                where = ", ".join(str(divmod(int(p), SIZE)) for p in diff[:6])
                rows.append(f"plane {plane} ({f.name} {k}): C {fast[plane].ravel()[diff[:6]]} at {where}")
    return "; ".join(rows)


def assert_same_planes(board: Board, what: str) -> bool:
    """Both colours' planes agree; whether a ladder plane lit (so the test can count them)."""
    lit = False
    for color in (BLACK, WHITE):
        fast, slow = planes(board, color), reference.planes(board, color)
        assert np.array_equal(fast, slow), f"{what}, {color=}: {describe_difference(fast, slow)}"
        lit |= bool(fast[LADDER_PLANES].any())
    return lit


def test_every_move_of_random_games_is_played_alike() -> None:
    """Captures, suicide, ko and the turns-since bookkeeping: the C play against the reference's
    on every move of 40 games (and every illegal point of every 10th position refused alike)."""
    moves = 0
    for number, (fast, slow, color, _move) in enumerate(games(40, 400, 0.6, seed=11)):
        assert bytes(fast.stones) == bytes(slow.stones)
        assert list(fast.placed) == list(slow.placed)
        assert (fast.ko, fast.prisoners) == (slow.ko, slow.prisoners)
        if number % 10 == 0:
            for p in range(POINTS):
                assert fast.illegal_reason(color, p) == rules.illegal_reason(slow, color, p), (number, p)
        moves += 1
    assert moves > 6000


@pytest.mark.parametrize(("seed", "fight", "count"), [(1, 0.0, 900), (2, 0.5, 450), (3, 0.9, 450)])
def test_planes_of_random_play(seed: int, fight: float, count: int) -> None:
    """1,800 positions in all, from the empty board to 400 moves, both colours to move; fewer of
    the fights, whose ladders make the reference slow to read."""
    positions = ladders = 0
    for number, (fast, _slow, _, _) in enumerate(games(80, 400, fight, seed)):
        if number % 9 == 0:
            ladders += assert_same_planes(fast, f"seed {seed}, position {number}, {len(fast.moves)} moves")
            positions += 1
        if positions == count:
            break
    assert positions == count
    if fight:
        assert ladders > 40, f"only {ladders} positions with a ladder plane lit: the fights make too few"


def test_planes_of_a_gnugo_game() -> None:
    record = (DATA / "gnugo-selfplay.sgf").read_text()
    for move in range(0, 121):
        where = position.from_sgf(record, move)
        assert_same_planes(where.board, f"GNU Go self-play, move {move}")


def test_planes_of_kos() -> None:
    """Kos taken at random places on the board after some random play; the ko point refused to
    the side it forbids."""
    rng = random.Random(5)
    for _ in range(60):
        board = Board()
        r, c = rng.randrange(1, SIZE - 1), rng.randrange(1, SIZE - 2)
        # A ko shape: black surrounds (r, c), white surrounds (r, c + 1); black captures.
        for color, p in (
            (BLACK, point(r - 1, c)), (BLACK, point(r + 1, c)), (BLACK, point(r, c - 1)),
            (WHITE, point(r - 1, c + 1)), (WHITE, point(r + 1, c + 1)), (WHITE, point(r, c + 2)),
            (WHITE, point(r, c)),
        ):  # fmt: skip
            if 0 <= p < POINTS and board.stones[p] == EMPTY:
                board.play(color, p)
        for _ in range(rng.randrange(0, 30)):
            color = BLACK if len(board.moves) % 2 == 0 else WHITE
            board.play(color, choose(board, color, rng, 0.3))
        try:
            board.play(BLACK, point(r, c + 1))
        except IllegalMove:
            continue
        assert_same_planes(board, f"ko at {(r, c)}")


@pytest.mark.parametrize("seed", range(6))
def test_planes_of_ladders_with_breakers(seed: int) -> None:
    """A two-liberty stone anywhere, chased on boards strewn with stones of both colours (which
    break the ladder or not): ladder captures and escapes lit, and read alike."""
    rng = random.Random(100 + seed)
    lit = 0
    for _ in range(25):
        board = Board()
        for _ in range(rng.randrange(0, 24)):
            p = rng.randrange(POINTS)
            color = rng.choice((BLACK, WHITE))
            if board.is_legal(color, p):
                board.play(color, p)
        r, c = rng.randrange(2, SIZE - 2), rng.randrange(2, SIZE - 2)
        for color, p in ((WHITE, point(r, c)), (BLACK, point(r - 1, c)), (BLACK, point(r, c + 1))):
            if board.is_legal(color, p):
                board.play(color, p)
        lit += assert_same_planes(board, f"seed {seed}, ladder at {(r, c)}")
        if board.stones[point(r, c)] == WHITE and board.is_legal(BLACK, point(r + 1, c)):
            board.play(BLACK, point(r + 1, c))  # atari: now white's escape is read
            lit += assert_same_planes(board, f"seed {seed}, atari at {(r + 1, c)}")
    assert lit > 10


def test_planes_into_a_batch_row() -> None:
    board = Board()
    for p in (point(3, 3), point(3, 4), point(15, 15)):
        board.play(BLACK if p != point(3, 4) else WHITE, p)
    batch = np.full((3, PLANES, SIZE, SIZE), 7.0, dtype=np.float32)
    assert np.shares_memory(planes(board, WHITE, out=batch[1]), batch[1])
    assert np.array_equal(batch[1], reference.planes(board, WHITE))
    assert (batch[[0, 2]] == 7.0).all()
    with pytest.raises(ValueError, match="out: float64"):
        planes(board, WHITE, out=np.zeros((PLANES, SIZE, SIZE)))


def test_play_many_replays_as_play_does_one_by_one() -> None:
    """A game replayed in one call ends where playing it move by move ends (stones, ages, ko,
    prisoners), and a sequence stops before its first illegal move, saying why."""
    ended = 0
    for fast, _slow, color, move in games(12, 300, 0.6, seed=21):
        if len(fast.moves) % 37 != 36:
            continue
        again = Board()
        assert again.play_many([*fast.moves]) is None
        assert (bytes(again.stones), list(again.placed)) == (bytes(fast.stones), list(fast.placed))
        assert (again.ko, again.prisoners, again.moves) == (fast.ko, fast.prisoners, fast.moves)
        occupied = next(p for p in range(POINTS) if fast.stones[p] == color)  # not captured by move
        tail = [Move(color, move), Move(opponent(color), occupied), Move(color, None)]
        error = again.play_many(tail)
        assert isinstance(error, IllegalMove) and error.point == occupied and error.reason == "the point is occupied"
        assert again.moves == [*fast.moves, tail[0]]  # the legal move before it stays played
        ended += 1
    assert ended > 20
