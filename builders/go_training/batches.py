"""Positions of a set of games as training batches: the 48 planes the server computes (the same
C code, :func:`cnnserve.go.features.planes`), seen through one of the eight symmetries, and the
point the player chose, seen through the same symmetry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from cnnserve.builders.go_training import symmetry
from cnnserve.builders.go_training.records import Game
from cnnserve.go import features
from cnnserve.go.board import Board
from cnnserve.go.coords import SIZE


class Example(NamedTuple):
    board: Board
    to_move: int
    target: int  # the point played


class Positions:
    """Every move on a point of ``games``, in order; position ``i`` is the board before it."""

    def __init__(self, games: Sequence[Game]) -> None:
        self.games = list(games)
        pairs = [(g, n) for g, game in enumerate(self.games) for n, m in enumerate(game.moves) if m.point is not None]
        array = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        self.game_of, self.move_of = array[:, 0], array[:, 1]

    def __len__(self) -> int:
        return len(self.game_of)

    def example(self, i: int) -> Example:
        game = self.games[self.game_of[i]]
        n = int(self.move_of[i])
        board = game.start.copy()
        error = board.play_many(list(game.moves[:n]))
        assert error is None, error  # records.read_game replayed these very moves
        move = game.moves[n]
        assert move.point is not None
        return Example(board, move.color, move.point)

    def batch(self, indices: Sequence[int] | np.ndarray, symmetries: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(planes, targets)``: float32 ``(n, 48, 19, 19)`` and int64 ``(n,)``."""
        x = np.empty((len(indices), features.PLANES, SIZE, SIZE), dtype=np.float32)
        y = np.empty(len(indices), dtype=np.int64)
        one = np.empty((features.PLANES, SIZE, SIZE), dtype=np.float32)
        for row, (i, s) in enumerate(zip(indices, symmetries, strict=True)):
            example = self.example(int(i))
            features.planes(example.board, example.to_move, out=one)
            x[row] = symmetry.planes(int(s), one)
            y[row] = symmetry.point(int(s), example.target)
        return x, y
