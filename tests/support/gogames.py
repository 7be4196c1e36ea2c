"""Go games for tests that need many positions fast: random legal moves from a seed, as SGF.

A stone is never played into the mover's own eye, so games stay short of the board filling up.
"""

from __future__ import annotations

import random

from cnnserve.go import sgf
from cnnserve.go.board import BLACK, Board, Move, opponent


def random_moves(seed: int, count: int, *, passes: bool = False) -> list[Move]:
    rng = random.Random(seed)
    board = Board()
    color = BLACK
    moves: list[Move] = []
    for _ in range(count):
        choices = [p for p in board.legal_points(color) if not board.is_eye(color, p)]
        p = rng.choice(choices) if choices and not (passes and rng.random() < 0.05) else None
        board.play(color, p)
        moves.append(Move(color, p))
        color = opponent(color)
    return moves


def random_record(seed: int, count: int = 60, *, passes: bool = False) -> str:
    return sgf.write(random_moves(seed, count, passes=passes), komi=7.5)
