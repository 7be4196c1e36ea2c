"""The 48 policy-network planes on hand-made positions, and the cheap move analysis against
playing every move out on a copy of the board."""

from __future__ import annotations

import random

import numpy as np
import pytest
from goreference import ladders
from goreference import planes as reference
from goreference.planes import sensible

from cnnserve.go import _fastgo
from cnnserve.go.board import BLACK, EMPTY, WHITE, Board, opponent
from cnnserve.go.coords import NEIGHBOURS, POINTS, point
from cnnserve.go.features import FEATURES, PLANES, planes

START = {f.name: f.start for f in FEATURES}


def board_from(text: str) -> Board:
    """Set-up stones from lines of ``.``, ``X`` (black) and ``O`` (white), the first line the top
    of the board and the first character its left column; missing rows and columns are empty."""
    board = Board()
    lines = [line.strip() for line in text.strip("\n").splitlines()]
    for row, line in enumerate(lines):
        for col, ch in enumerate(line):
            color = {".": EMPTY, "X": BLACK, "O": WHITE}[ch]
            if color != EMPTY:
                board.place(color, point(row, col))
    board.check_setup()
    return board


def lit(array: np.ndarray, name: str, offset: int = 0) -> set[tuple[int, int]]:
    """The (row, col) points that are 1 in plane ``offset`` of feature ``name``."""
    rows, cols = np.nonzero(array[START[name] + offset])
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def plane_at(array: np.ndarray, name: str, row: int, col: int) -> int | None:
    """Which of feature ``name``'s planes is 1 at a point (None: none of them); fails when
    several are, since every feature is one-hot."""
    count = next(f.count for f in FEATURES if f.name == name)
    values = array[START[name] : START[name] + count, row, col]
    hot = np.flatnonzero(values)
    assert len(hot) <= 1, f"{name} at {(row, col)} is not one-hot: {values}"
    return int(hot[0]) if len(hot) else None


# -- the layout -------------------------------------------------------------------------------


def test_features_cover_the_48_planes_in_table_order() -> None:
    assert PLANES == 48
    assert [f.name for f in FEATURES] == [
        "stone_colour",
        "ones",
        "turns_since",
        "liberties",
        "capture_size",
        "self_atari_size",
        "liberties_after_move",
        "ladder_capture",
        "ladder_escape",
        "sensibleness",
        "zeros",
    ]
    assert [f.count for f in FEATURES] == [3, 1, 8, 8, 8, 8, 8, 1, 1, 1, 1]
    nxt = 0
    for f in FEATURES:
        assert f.start == nxt, f
        assert f.meaning
        nxt += f.count
    assert nxt == PLANES


def test_planes_are_float32_contiguous_zero_one() -> None:
    board = Board()
    for p in (point(3, 3), point(15, 15), point(3, 15)):
        board.play(BLACK if p != point(15, 15) else WHITE, p)
    array = planes(board, BLACK)
    assert array.shape == (48, 19, 19)
    assert array.dtype == np.float32
    assert array.flags["C_CONTIGUOUS"]
    assert set(np.unique(array).tolist()) <= {0.0, 1.0}


def test_to_move_must_be_a_colour() -> None:
    with pytest.raises(ValueError, match="neither BLACK nor WHITE"):
        planes(Board(), EMPTY)


def test_ones_and_zeros() -> None:
    board = board_from("X.\n.O")
    array = planes(board, WHITE)
    assert (array[START["ones"]] == 1).all()
    assert (array[START["zeros"]] == 0).all()


# -- stone colour and the point of view -------------------------------------------------------


def test_stone_colour_is_from_the_side_to_move() -> None:
    board = board_from(
        """
        X.O
        .X.
        O..
        """
    )
    black = {(0, 0), (1, 1)}
    white = {(0, 2), (2, 0)}
    empty = {(r, c) for r in range(19) for c in range(19)} - black - white

    for_black = planes(board, BLACK)
    assert lit(for_black, "stone_colour", 0) == black
    assert lit(for_black, "stone_colour", 1) == white
    assert lit(for_black, "stone_colour", 2) == empty

    for_white = planes(board, WHITE)
    assert lit(for_white, "stone_colour", 0) == white
    assert lit(for_white, "stone_colour", 1) == black
    assert lit(for_white, "stone_colour", 2) == empty


def test_move_planes_follow_the_side_to_move() -> None:
    # (0, 1) captures the white corner stone for black; for white it is suicide.
    board = board_from(
        """
        O.
        X.
        """
    )
    assert plane_at(planes(board, BLACK), "capture_size", 0, 1) == 1
    assert plane_at(planes(board, WHITE), "capture_size", 0, 1) == 0  # extends, captures nothing
    board = board_from(
        """
        O.X
        XX.
        """
    )
    assert plane_at(planes(board, BLACK), "capture_size", 0, 1) == 1
    assert plane_at(planes(board, WHITE), "capture_size", 0, 1) is None  # suicide for white


# -- turns since ------------------------------------------------------------------------------


def test_turns_since_counts_moves_back_from_the_last() -> None:
    board = Board()
    played = [point(r, r) for r in range(10)]  # no two touch
    for i, p in enumerate(played):
        board.play(BLACK if i % 2 == 0 else WHITE, p)
    array = planes(board, BLACK)
    for i, p in enumerate(played):
        age = len(played) - 1 - i
        assert plane_at(array, "turns_since", *divmod(p, 19)) == min(age, 7)
    assert plane_at(array, "turns_since", 0, 18) is None  # empty points are 0 in every plane
    assert len(lit(array, "turns_since", 0)) == 1
    assert lit(array, "turns_since", 7) == {(0, 0), (1, 1), (2, 2)}


def test_turns_since_puts_setup_stones_in_the_last_plane_and_passes_count() -> None:
    board = board_from("X.O")  # set up: age unknown
    board.play(BLACK, point(5, 5))
    board.play(WHITE, None)
    array = planes(board, BLACK)
    assert plane_at(array, "turns_since", 0, 0) == 7
    assert plane_at(array, "turns_since", 0, 2) == 7
    assert plane_at(array, "turns_since", 5, 5) == 1  # the pass was the last move


def test_turns_since_forgets_captured_stones() -> None:
    board = Board()
    board.play(WHITE, point(0, 0))
    board.play(BLACK, point(0, 1))
    board.play(WHITE, point(9, 9))
    board.play(BLACK, point(1, 0))  # captures (0, 0)
    array = planes(board, WHITE)
    assert plane_at(array, "turns_since", 0, 0) is None
    assert plane_at(array, "turns_since", 1, 0) == 0
    assert plane_at(array, "turns_since", 9, 9) == 1
    assert plane_at(array, "turns_since", 0, 1) == 2


# -- liberties --------------------------------------------------------------------------------


def test_liberties_of_both_colours() -> None:
    board = board_from(
        """
        X................O
        .................X
        ...........
        ...........
        ...........
        ...........
        ...........
        ...........
        ...........
        ........XXX
        ...........
        ...........
        ...........
        ....O......
        """
    )
    array = planes(board, WHITE)
    assert plane_at(array, "liberties", 0, 0) == 1  # corner stone: 2 liberties
    assert plane_at(array, "liberties", 0, 17) == 1  # white, 2 liberties: (0, 16) and (0, 18)
    assert plane_at(array, "liberties", 1, 17) == 2  # 3 liberties
    assert plane_at(array, "liberties", 13, 4) == 3  # a lone stone in the open: 4 liberties
    for col in (8, 9, 10):  # three in a row in the open: 8 liberties, the last plane
        assert plane_at(array, "liberties", 9, col) == 7
    assert not array[START["liberties"] : START["liberties"] + 8, 5, 5].any()  # empty


def test_liberties_of_groups_in_atari() -> None:
    board = board_from(
        """
        XO
        .X
        """
    )
    array = planes(board, BLACK)
    assert plane_at(array, "liberties", 0, 0) == 0  # black, one liberty: (1, 0)
    assert plane_at(array, "liberties", 0, 1) == 0  # white, one liberty: (0, 2)
    assert plane_at(array, "liberties", 1, 1) == 2  # black, three liberties


# -- capture size -----------------------------------------------------------------------------


def test_capture_size_counts_the_stones_taken() -> None:
    board = board_from(
        """
        .OOOX
        .XXX.
        """
    )
    array = planes(board, BLACK)
    assert plane_at(array, "capture_size", 0, 0) == 3
    assert lit(array, "capture_size", 3) == {(0, 0)}
    assert plane_at(array, "capture_size", 10, 10) == 0  # a legal move that captures nothing
    assert plane_at(array, "capture_size", 0, 1) is None  # occupied
    # For white, (0, 0) connects to the group in atari: legal, captures nothing.
    assert plane_at(planes(board, WHITE), "capture_size", 0, 0) == 0


def test_capture_size_adds_up_groups_and_saturates() -> None:
    board = board_from(
        """
        .OOOOOOOOX
        .XXXXXXXX.
        ..........
        X.X
        O.OX
        X.X
        """
    )
    array = planes(board, BLACK)
    assert plane_at(array, "capture_size", 0, 0) == 7  # 8 stones: the last plane, 7 or more
    assert plane_at(array, "capture_size", 4, 1) == 2  # two one-stone groups at once


# -- self-atari size --------------------------------------------------------------------------


def test_self_atari_size() -> None:
    board = board_from(
        """
        X.O
        .O.
        O..
        ..........
        ..........
        .....O....
        ....O.O...
        """
    )
    array = planes(board, BLACK)
    assert plane_at(array, "self_atari_size", 1, 0) == 1  # joins (0, 0): two stones, one liberty
    assert plane_at(array, "self_atari_size", 0, 1) == 1
    assert plane_at(array, "self_atari_size", 6, 5) == 0  # a lone stone with one liberty
    assert plane_at(array, "self_atari_size", 10, 10) is None  # four liberties
    assert plane_at(array, "self_atari_size", 1, 2) is None  # two liberties
    assert lit(array, "self_atari_size", 1) == {(0, 1), (1, 0)}


def test_self_atari_size_saturates_and_counts_after_captures() -> None:
    board = board_from(
        """
        XXXXXXXX..
        OOOOOOOOOX
        """
    )
    # Black (0, 8) joins the row: nine stones, one liberty (0, 9).
    array = planes(board, BLACK)
    assert plane_at(array, "self_atari_size", 0, 8) == 7
    assert plane_at(array, "liberties_after_move", 0, 8) == 0
    board = board_from(
        """
        XXXXXXXX.OX
        OOOOOOOOOX
        """
    )
    # Now (0, 8) is legal only because it captures white (0, 9), whose point is then the row's
    # one liberty: still a self-atari of nine.
    array = planes(board, BLACK)
    assert plane_at(array, "capture_size", 0, 8) == 1
    assert plane_at(array, "self_atari_size", 0, 8) == 7
    board = board_from(
        """
        XXXXXXXX..
        OOOOOOOOOX
        XXXXXXXXX.
        """
    )
    # White's row has one liberty too, (0, 8): capturing its nine stones frees all of row 1.
    array = planes(board, BLACK)
    assert plane_at(array, "capture_size", 0, 8) == 7
    assert plane_at(array, "self_atari_size", 0, 8) is None
    assert plane_at(array, "liberties_after_move", 0, 8) == 7


# -- liberties after the move -----------------------------------------------------------------


def test_liberties_after_move_counts_freed_points_touching_the_group() -> None:
    lone = board_from(
        """
        .OOOX
        .XXX.
        """
    )
    # A lone stone at (0, 0): (1, 0), and (0, 1) freed; (0, 2) and (0, 3) do not touch it.
    assert plane_at(planes(lone, BLACK), "liberties_after_move", 0, 0) == 1
    joined = board_from(
        """
        .OOOX
        XXXX.
        OO...
        """
    )
    # (0, 0) joins the row: (2, 2), (2, 3), (1, 4), and the three freed points it touches.
    array = planes(joined, BLACK)
    assert plane_at(array, "liberties_after_move", 0, 0) == 5
    assert plane_at(array, "capture_size", 0, 0) == 3


def test_liberties_after_move_joins_groups_and_saturates() -> None:
    board = board_from(
        """
        ..........
        ..........
        ..X.X.....
        """
    )
    array = planes(board, BLACK)
    # (2, 3) joins two stones: (1, 2), (1, 3), (1, 4), (2, 1), (2, 5), (3, 2), (3, 3), (3, 4).
    assert plane_at(array, "liberties_after_move", 2, 3) == 7
    assert plane_at(array, "liberties_after_move", 0, 0) == 1  # the corner: two
    assert plane_at(array, "liberties_after_move", 0, 5) == 2  # the edge: three
    assert plane_at(array, "liberties_after_move", 1, 3) == 3  # four empty neighbours
    assert plane_at(array, "liberties_after_move", 2, 2) is None  # occupied


# -- ko, suicide and eyes ---------------------------------------------------------------------

MOVE_FEATURES = ("capture_size", "self_atari_size", "liberties_after_move", "ladder_capture", "ladder_escape")


def assert_illegal(array: np.ndarray, row: int, col: int) -> None:
    for name in MOVE_FEATURES:
        assert plane_at(array, name, row, col) is None, name
    assert plane_at(array, "sensibleness", row, col) is None


def ko_board() -> Board:
    board = board_from(
        """
        .X.....
        X......
        .......
        ....XO.
        ...XO.O
        ....XO.
        """
    )
    board.play(BLACK, point(4, 5))  # takes the ko: white may not retake at (4, 4) at once
    assert board.ko == (point(4, 4), WHITE)
    return board


def test_ko_point_is_illegal_for_the_side_it_forbids() -> None:
    board = ko_board()
    assert_illegal(planes(board, WHITE), 4, 4)
    assert not sensible(board, WHITE)[point(4, 4)]
    # Black may fill it (a false eye: two white diagonals), so for black it is a move.
    for_black = planes(board, BLACK)
    assert plane_at(for_black, "liberties_after_move", 4, 4) is not None
    assert plane_at(for_black, "sensibleness", 4, 4) == 0
    # Once white has played elsewhere, the retake is legal and captures one stone.
    board.play(WHITE, point(15, 15))
    board.play(BLACK, point(15, 3))
    retake = planes(board, WHITE)
    assert plane_at(retake, "capture_size", 4, 4) == 1
    assert plane_at(retake, "sensibleness", 4, 4) == 0


def test_own_eye_is_legal_but_not_sensible() -> None:
    board = board_from(
        """
        .X
        X.
        """
    )
    for_black = planes(board, BLACK)
    assert plane_at(for_black, "liberties_after_move", 0, 0) == 2  # (0, 2), (1, 1), (2, 0)
    assert plane_at(for_black, "capture_size", 0, 0) == 0
    assert plane_at(for_black, "sensibleness", 0, 0) is None
    assert plane_at(for_black, "sensibleness", 1, 1) == 0
    assert not sensible(board, BLACK)[point(0, 0)]
    assert sensible(board, BLACK)[point(1, 1)]
    # For white the same point is suicide.
    assert_illegal(planes(board, WHITE), 0, 0)
    assert not sensible(board, WHITE)[point(0, 0)]


def test_a_false_eye_is_sensible() -> None:
    board = board_from(
        """
        .X
        XO
        """
    )
    # The white stone at the corner eye's diagonal makes it false: filling it is a real move.
    assert plane_at(planes(board, BLACK), "sensibleness", 0, 0) == 0
    assert sensible(board, BLACK)[point(0, 0)]


def test_sensible_matches_the_sensibleness_plane() -> None:
    board = ko_board()  # nine stones; black's corner eye at (0, 0)
    for color, out in ((BLACK, {point(0, 0)}), (WHITE, {point(0, 0), point(4, 4)})):
        flags = sensible(board, color)
        assert len(flags) == POINTS
        assert flags == (planes(board, color)[START["sensibleness"]].ravel() == 1).tolist()
        empty = {p for p in range(POINTS) if board.stones[p] == EMPTY}
        assert len(empty) == POINTS - 9
        assert {p for p in range(POINTS) if flags[p]} == empty - out


# -- ladders ----------------------------------------------------------------------------------

# A white stone with two liberties. Black at (3, 2) drives it down and to the right across the
# empty board to the bottom edge, where it dies; black at (4, 3) drives it up and left into the
# corner, where it dies too.
LADDER = """
    ...................
    ...................
    ...X...............
    ...OX..............
    ..X................
    """


def test_ladder_capture() -> None:
    array = planes(board_from(LADDER), BLACK)
    assert lit(array, "ladder_capture") == {(3, 2), (4, 3)}


def test_ladder_breaker_makes_the_ladder_capture_fail() -> None:
    board = board_from(LADDER)
    board.place(WHITE, point(12, 12))  # on the diagonal the ladder runs down
    array = planes(board, BLACK)
    assert lit(array, "ladder_capture") == {(4, 3)}  # the ladder to the corner still works
    assert plane_at(array, "liberties_after_move", 3, 2) is not None  # (3, 2) is still legal


def test_ladder_fails_when_a_chasing_stone_falls_into_atari() -> None:
    board = board_from(LADDER)
    board.place(WHITE, point(2, 4))  # black (3, 4) keeps two liberties until white reaches (4, 4)
    # After black (3, 2), white (4, 3), black (5, 3), white (4, 4), the black stone at (3, 4)
    # is in atari and white captures it at (3, 5) rather than run.
    assert (3, 2) not in lit(planes(board, BLACK), "ladder_capture")


def test_attackers_stone_on_the_path_is_no_breaker() -> None:
    board = board_from(LADDER)
    board.place(BLACK, point(12, 12))
    assert lit(planes(board, BLACK), "ladder_capture") == {(3, 2), (4, 3)}


def test_no_ladder_capture_of_a_group_with_more_liberties() -> None:
    board = board_from(
        """
        ...................
        ...................
        ...X...............
        ...O...............
        ..X................
        """
    )
    # Three liberties: no single move puts it in atari.
    assert lit(planes(board, BLACK), "ladder_capture") == set()
    # And white (the side whose stone it is) has no ladder captures to make.
    assert lit(planes(board_from(LADDER), WHITE), "ladder_capture") == set()


def test_ladder_escape() -> None:
    board = board_from(LADDER)
    board.play(BLACK, point(3, 2))  # atari: the last liberty is (4, 3)
    array = planes(board, WHITE)
    assert lit(array, "ladder_escape") == set()  # running only leads to the edge
    assert plane_at(array, "liberties_after_move", 4, 3) == 1  # it is legal, two liberties

    broken = board_from(LADDER)
    broken.place(WHITE, point(12, 12))
    broken.play(BLACK, point(3, 2))
    assert lit(planes(broken, WHITE), "ladder_escape") == {(4, 3)}
    # The escape plane is the side to move's: black has no group in atari.
    assert lit(planes(broken, BLACK), "ladder_escape") == set()


def test_ladder_escape_by_capturing_an_attacker() -> None:
    board = board_from(
        """
        .....
        .....
        ...XO
        ..XOXO
        ..X..
        ...X.
        """
    )
    # White (3, 3) is in atari at (4, 3), where extending leaves two stones in atari again; but
    # black (3, 4) is in atari too, and taking it at (4, 4) gets white out.
    array = planes(board, WHITE)
    assert lit(array, "ladder_escape") == {(4, 4)}
    assert plane_at(array, "self_atari_size", 4, 3) == 1
    assert plane_at(array, "capture_size", 4, 4) == 1
    # For black, (4, 3) captures a stone already in atari: that is no ladder capture.
    assert (4, 3) not in lit(planes(board, BLACK), "ladder_capture")


# -- the cheap analysis against playing every move ---------------------------------------------


def random_position(seed: int, moves: int) -> Board:
    rng = random.Random(seed)
    board = Board()
    color = BLACK
    for _ in range(moves):
        legal = [p for p in range(POINTS) if board.is_legal(color, p) and not board.is_eye(color, p)]
        board.play(color, rng.choice(legal) if legal else None)
        color = opponent(color)
    return board


@pytest.mark.parametrize(("seed", "moves"), [(1, 120), (2, 120), (3, 200), (4, 200)])
def test_move_planes_match_playing_each_move(seed: int, moves: int) -> None:
    board = random_position(seed, moves)
    for color in (BLACK, WHITE):
        array = planes(board, color)
        for p in range(POINTS):
            row, col = divmod(p, 19)
            if board.stones[p] != EMPTY:
                assert plane_at(array, "liberties", row, col) == min(board.liberties(p), 8) - 1
                assert_illegal(array, row, col)
                continue
            if not board.is_legal(color, p):
                assert_illegal(array, row, col)
                continue
            after = board.copy()
            captured = after.play(color, p)
            group = after.group(p)
            where = f"{'black' if color == BLACK else 'white'} at {(row, col)}"
            assert plane_at(array, "capture_size", row, col) == min(len(captured), 7), where
            assert plane_at(array, "liberties_after_move", row, col) == min(len(group.liberties), 8) - 1, where
            expected_atari = min(len(group.stones), 8) - 1 if len(group.liberties) == 1 else None
            assert plane_at(array, "self_atari_size", row, col) == expected_atari, where
            assert plane_at(array, "sensibleness", row, col) == (None if board.is_eye(color, p) else 0), where
            if plane_at(array, "ladder_capture", row, col) == 0:
                # A ladder capture ataris an opponent group that had two liberties.
                ataris = [
                    n
                    for n in NEIGHBOURS[p]
                    if board.stones[n] == opponent(color)
                    and len(board.group(n).liberties) == 2
                    and len(after.group(n).liberties) == 1
                ]
                assert ataris, where
            if plane_at(array, "ladder_escape", row, col) == 0:
                # A ladder escape leaves a group of the player's that was in atari with two or more.
                saved = [
                    q
                    for q in range(POINTS)
                    if board.stones[q] == color and board.liberties(q) == 1 and len(after.group(q).liberties) >= 2
                ]
                assert saved, where


def ladder_readings(board: Board, **limits: int) -> tuple[set[int], set[int]]:
    """The C reading of the LADDER position: black's ladder captures of the white stone, and
    white's ladder escapes after black's (3, 2), with the reading's limits lowered."""
    prey = point(3, 3)
    captures = {
        p
        for p in (point(3, 2), point(4, 3))
        if _fastgo.ladder_capture(board.stones, -1, 0, BLACK, p, prey, *limits.values())
    }
    after = board.copy()
    after.play(BLACK, point(3, 2))
    escapes = {
        p for p in (point(4, 3),) if _fastgo.ladder_escape(after.stones, -1, 0, WHITE, p, prey, *limits.values())
    }
    return captures, escapes


def test_a_ladder_longer_than_the_reading_counts_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ladder down the board takes about 30 plies, the one into the corner about 10.
    monkeypatch.setattr(ladders, "MAX_DEPTH", 20)
    assert lit(reference.planes(board_from(LADDER), BLACK), "ladder_capture") == {(4, 3)}
    board = board_from(LADDER)
    board.play(BLACK, point(3, 2))
    assert lit(reference.planes(board, WHITE), "ladder_escape") == {(4, 3)}
    # The C reading, with the same limit and with its own (100 plies, both ladders read out).
    assert ladder_readings(board_from(LADDER), max_depth=20) == ({point(4, 3)}, {point(4, 3)})
    assert ladder_readings(board_from(LADDER)) == ({point(3, 2), point(4, 3)}, set())


def test_a_reading_out_of_moves_counts_as_a_failed_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ladders, "MAX_PLAYS", 8)
    assert lit(reference.planes(board_from(LADDER), BLACK), "ladder_capture") == set()
    board = board_from(LADDER)
    board.play(BLACK, point(3, 2))
    assert lit(reference.planes(board, WHITE), "ladder_escape") == {(4, 3)}
    assert ladder_readings(board_from(LADDER), max_depth=100, max_plays=8) == (set(), {point(4, 3)})
