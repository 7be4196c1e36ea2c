"""Batches: the planes the server would compute for each position, and the move played, both
through the batch's symmetries; passes are not targets."""

from __future__ import annotations

import numpy as np
from gogames import random_record

from cnnserve.builders.go_training import records, symmetry
from cnnserve.builders.go_training.batches import Positions
from cnnserve.go import features, position


def test_every_move_on_a_point_is_a_position_and_passes_are_not() -> None:
    text = random_record(5, 80, passes=True)
    game = records.read_game(text, "g.sgf")
    passes = sum(1 for m in game.moves if m.point is None)
    assert passes > 0
    positions = Positions([game])
    assert len(positions) == 80 - passes


def test_batch_rows_are_the_servers_planes_and_moves_under_each_symmetry() -> None:
    texts = [random_record(seed, 50) for seed in (1, 2)]
    positions = Positions([records.read_game(t, f"{i}.sgf") for i, t in enumerate(texts)])
    indices = [0, 7, 49, 50, 77, 99]
    chosen = [0, 1, 2, 3, 4, 5]
    x, y = positions.batch(indices, chosen)
    assert x.shape == (6, 48, 19, 19) and x.dtype == np.float32 and y.dtype == np.int64
    for row, (i, s) in enumerate(zip(indices, chosen, strict=True)):
        game, n = divmod(i, 50)
        where = position.from_sgf(texts[game], n)  # the server's own reading of the record
        expected = features.planes(where.board, where.to_move)
        np.testing.assert_array_equal(x[row], symmetry.planes(s, expected))
        played = position.from_sgf(texts[game], n + 1).board.moves[-1].point
        assert played is not None
        assert y[row] == symmetry.point(s, played)
