"""The eight symmetries: a group acting on points, and the planes of a transformed game are the
transformed planes of the game (ladders, liberties and ages included)."""

from __future__ import annotations

import numpy as np
import pytest
from gogames import random_moves

from cnnserve.builders.go_training import symmetry
from cnnserve.go import features
from cnnserve.go.board import Board, Move
from cnnserve.go.coords import POINTS


def test_eight_distinct_permutations_with_the_identity_first() -> None:
    maps = {tuple(symmetry.points(s)) for s in range(symmetry.COUNT)}
    assert len(maps) == 8
    assert tuple(symmetry.points(0)) == tuple(range(POINTS))
    for s in range(symmetry.COUNT):
        assert sorted(symmetry.points(s)) == list(range(POINTS))


def test_corners_go_to_corners_and_the_centre_stays() -> None:
    corners = {0, 18, 342, 360}
    for s in range(symmetry.COUNT):
        assert {symmetry.point(s, c) for c in corners} == corners
        assert symmetry.point(s, 180) == 180


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("s", range(8))
def test_planes_of_the_transformed_game_are_the_transformed_planes(seed: int, s: int) -> None:
    moves = random_moves(seed, 120)
    original, turned = Board(), Board()
    assert original.play_many(moves[:-1]) is None
    assert turned.play_many([Move(m.color, None if m.point is None else symmetry.point(s, m.point))
                             for m in moves[:-1]]) is None  # fmt: skip
    to_move = moves[-1].color
    expected = symmetry.planes(s, features.planes(original, to_move))
    np.testing.assert_array_equal(features.planes(turned, to_move), expected)
    # The move played is taken with the board: its plane values follow it.
    target = moves[-1].point
    assert target is not None
    assert (expected[:, symmetry.point(s, target) // 19, symmetry.point(s, target) % 19]
            == features.planes(original, to_move)[:, target // 19, target % 19]).all()  # fmt: skip
