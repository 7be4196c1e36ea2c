"""Whose area each empty point is, and when a board is settled."""

from __future__ import annotations

from cnnserve.go import territory
from cnnserve.go.board import BLACK, EMPTY, WHITE, Board
from cnnserve.go.coords import POINTS, SIZE, from_gtp, point

# Eyes left in each side's wall of stones (two per group at least, so nothing is in atari).
BLACK_EYES = {point(r, c) for r, c in ((1, 1), (1, 6), (8, 3), (14, 2), (14, 6))}
WHITE_EYES = {point(r, c) for r, c in ((2, 12), (2, 16), (10, 14), (16, 11), (16, 16))}


def walls(middle: int) -> Board:
    """Black left of column K, white right of it, with eyes; column K holds ``middle``."""
    board = Board()
    for p in range(POINTS):
        col = p % SIZE
        if col < 9 and p not in BLACK_EYES:
            board.place(BLACK, p)
        elif col > 9 and p not in WHITE_EYES:
            board.place(WHITE, p)
        elif col == 9 and middle != EMPTY:
            board.place(middle, p)
    return board


def test_walled_areas_belong_to_the_wall_and_dame_to_nobody() -> None:
    board = walls(EMPTY)
    owner = territory.owners(board)
    assert all(owner[p] == BLACK for p in BLACK_EYES) and all(owner[p] == WHITE for p in WHITE_EYES)
    assert all(owner[point(r, 9)] == EMPTY for r in range(SIZE))  # touches both: dame
    assert all(owner[p] == board.stones[p] for p in range(POINTS) if board.stones[p] != EMPTY)
    assert not territory.settled(board)
    assert territory.settled(walls(BLACK))


def test_the_opening_is_nobodys_area() -> None:
    assert not territory.settled(Board())
    board = Board()
    board.play(BLACK, from_gtp("Q16"))
    assert set(territory.owners(board)) == {EMPTY, BLACK}
    assert territory.owners(board).count(BLACK) == 1  # the stone; the open board around it is nobody's
    assert not territory.settled(board)


def test_a_stone_inside_a_wall_opens_the_area_around_it() -> None:
    board = walls(BLACK)
    board.place(EMPTY, point(5, 4))
    board.place(EMPTY, point(5, 5))
    board.place(WHITE, point(5, 4))
    owner = territory.owners(board)
    assert owner[point(5, 5)] == EMPTY  # it touches the white stone: black may still capture it
    assert not territory.settled(board)


def test_a_chain_in_atari_unsettles_a_board_of_areas() -> None:
    board = walls(BLACK)
    last, *others = sorted(WHITE_EYES)
    for p in others:  # white fills all its eyes but one: its one chain is in atari
        board.place(WHITE, p)
    owner = territory.owners(board)
    assert all(o != EMPTY for o in owner) and owner[last] == WHITE
    assert not territory.settled(board)
