import pytest

from cnnserve.go.board import BLACK, EMPTY, WHITE, Board, IllegalMove, parse_color
from cnnserve.go.coords import from_gtp
from cnnserve.go.position import from_text


def board_of(*rows: str) -> Board:
    """A board whose top rows are ``rows`` (the rest empty)."""
    lines = list(rows) + ["." * 19] * (19 - len(rows))
    return from_text("\n".join(line.ljust(19, ".") for line in lines), BLACK).board


def v(name: str) -> int:
    p = from_gtp(name)
    assert p is not None
    return p


def test_a_group_and_its_liberties() -> None:
    board = board_of("XX.", "O..")
    group = board.group(v("A19"))
    assert group.color == BLACK
    assert group.stones == {v("A19"), v("B19")}
    assert group.liberties == {v("C19"), v("B18")}
    assert board.liberties(v("A18")) == 2  # the white stone: A17 and B18
    index, groups = board.groups()
    assert len(groups) == 2 and index[v("A19")] == index[v("B19")] != index[v("A18")]
    assert index[v("C19")] == -1


def test_a_move_that_takes_the_last_liberty_captures() -> None:
    board = board_of("OX.")
    assert board.play(BLACK, v("C19")) == []  # B19 keeps B18
    captured = board.play(BLACK, v("A18"))
    assert captured == [v("A19")]
    assert board.stones[v("A19")] == EMPTY
    assert board.prisoners[BLACK] == 1


def test_a_move_captures_every_group_it_takes_the_last_liberty_of() -> None:
    board = board_of(".OX", "OX", "X")
    board.play(BLACK, v("A19"))  # not suicide: it captures B19 and A18 at once
    assert board.stones[v("B19")] == EMPTY and board.stones[v("A18")] == EMPTY
    assert board.prisoners[BLACK] == 2


def test_suicide_is_illegal_and_changes_nothing() -> None:
    board = board_of(".X", "X")
    before = board.copy()
    assert board.illegal_reason(WHITE, v("A19")) is not None
    with pytest.raises(IllegalMove, match="suicide"):
        board.play(WHITE, v("A19"))
    assert board == before and board.moves == []
    # Filling the last liberty of one's own group is suicide too.
    board = board_of(".OX", "OX", "X")
    assert not board.is_legal(WHITE, v("A19"))
    # ...unless it captures.
    board = board_of(".XO", "XO", "O")
    assert board.is_legal(WHITE, v("A19"))


def test_occupied_points_are_illegal() -> None:
    board = board_of("X")
    with pytest.raises(IllegalMove, match="occupied"):
        board.play(WHITE, v("A19"))


def test_simple_ko_forbids_the_immediate_retake_only() -> None:
    board = Board()
    setup = {
        BLACK: ["B19", "A18", "B17"],
        WHITE: ["C19", "D18", "C17"],
    }
    for color, names in setup.items():
        for name in names:
            board.place(color, v(name))
    board.play(WHITE, v("B18"))  # one liberty left, at C18
    captured = board.play(BLACK, v("C18"))
    assert captured == [v("B18")]
    assert board.ko == (v("B18"), WHITE)
    with pytest.raises(IllegalMove, match="ko"):
        board.play(WHITE, v("B18"))
    board.play(WHITE, v("Q16"))  # a ko threat elsewhere
    assert board.ko is None
    board.play(BLACK, v("Q4"))
    assert board.play(WHITE, v("B18")) == [v("C18")]  # now white may retake
    assert board.ko == (v("C18"), BLACK)


def test_capturing_two_stones_makes_no_ko() -> None:
    board = board_of(".OX", "OX", "X")
    board.play(BLACK, v("A19"))
    assert board.ko is None


def test_passes_are_moves_and_clear_the_ko() -> None:
    board = Board()
    board.play(BLACK, None)
    board.play(WHITE, v("D4"))
    assert [m.point for m in board.moves] == [None, v("D4")]
    assert board.age(v("D4")) == 0
    board.play(BLACK, None)
    assert board.age(v("D4")) == 1


def test_ages_count_moves_since_each_stone_was_played() -> None:
    board = board_of("X")  # a set-up stone has no known age
    assert board.age(v("A19")) is None
    for i, name in enumerate(["D4", "Q16", "D16"]):
        board.play(BLACK if i % 2 == 0 else WHITE, v(name))
    assert [board.age(v(n)) for n in ["D4", "Q16", "D16"]] == [2, 1, 0]


def test_copy_is_independent() -> None:
    board = Board()
    board.play(BLACK, v("D4"))
    other = board.copy()
    other.play(WHITE, v("Q16"))
    assert board.stones[v("Q16")] == EMPTY and len(board.moves) == 1


def test_eyes() -> None:
    board = board_of(".X", "XX")
    assert board.is_eye(BLACK, v("A19"))  # corner eye: neighbours black, the one diagonal black
    assert not board.is_eye(WHITE, v("A19"))
    board = board_of(".X", "XO")
    assert not board.is_eye(BLACK, v("A19"))  # the diagonal is white: a false eye on the edge
    middle = board_of("", "", ".X.", "X.X", ".X.")
    assert middle.is_eye(BLACK, v("B16"))  # no stone on the diagonals: an eye
    middle = board_of("", "", "OXO", "X.X", ".X.")
    assert not middle.is_eye(BLACK, v("B16"))  # two of four diagonals white: false
    middle = board_of("", "", "OX.", "X.X", ".X.")
    assert middle.is_eye(BLACK, v("B16"))  # one of four: still an eye


def test_setup_check_finds_groups_without_liberties() -> None:
    board = Board()
    board.place(WHITE, v("A19"))
    board.place(BLACK, v("B19"))
    board.place(BLACK, v("A18"))
    with pytest.raises(ValueError, match="white stone at A19 has no liberties"):
        board.check_setup()


def test_text_round_trip() -> None:
    board = board_of("XO.", ".X")
    assert board.to_text().splitlines()[:2] == ["XO" + "." * 17, ".X" + "." * 17]
    assert from_text(board.to_text(), WHITE).board == board


@pytest.mark.parametrize("text,color", [("b", BLACK), ("BLACK", BLACK), ("w", WHITE), ("White", WHITE)])
def test_colours(text: str, color: int) -> None:
    assert parse_color(text) == color


def test_unknown_colour() -> None:
    with pytest.raises(ValueError, match="not a colour"):
        parse_color("red")
