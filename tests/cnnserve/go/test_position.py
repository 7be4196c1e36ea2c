"""Positions from SGF records and text boards, and the errors that name the field at fault."""

import pytest

from cnnserve.go import sgf
from cnnserve.go.board import BLACK, EMPTY, WHITE, Move
from cnnserve.go.coords import from_gtp, from_sgf
from cnnserve.go.position import PositionError, describe, from_text
from cnnserve.go.position import from_sgf as position_at

GAME = "(;GM[1]FF[4]SZ[19]KM[6.5]PB[Some \\] one]C[a comment with ( and ; inside];B[pd];W[dp];B[pp];W[dd])"


def test_the_main_line_is_replayed_to_the_move_number() -> None:
    for n in range(5):
        where = position_at(GAME, n)
        assert where.move_number == n
        assert len(where.board.moves) == n
        assert where.to_move == (BLACK if n % 2 == 0 else WHITE)
    end = position_at(GAME)
    assert end.move_number == 4 and end.board.stones[from_sgf("dd")] == WHITE  # type: ignore[index]
    assert describe(end) == "black to move after 4 moves (last: white D16)"


def test_escaped_brackets_comments_and_whitespace_parse() -> None:
    record = sgf.parse(GAME.replace(";B", " ;\n B").replace(";W", "\n;  W"))
    assert record.root["PB"] == ["Some ] one"]
    assert record.root["C"] == ["a comment with ( and ; inside"]
    assert [n.get("B", n.get("W")) for n in record.nodes[1:]] == [["pd"], ["dp"], ["pp"], ["dd"]]


def test_variations_follow_the_first_branch() -> None:
    record = "(;SZ[19];B[aa](;W[bb];B[cc])(;W[dd](;B[ee])))"
    where = position_at(record)
    assert where.move_number == 3
    assert where.board.stones[from_sgf("cc")] == BLACK  # type: ignore[index]
    assert where.board.stones[from_sgf("dd")] == EMPTY  # type: ignore[index]


def test_handicap_stones_and_white_to_move() -> None:
    where = position_at("(;GM[1]SZ[19]HA[2]AB[dp][pd])", 0)
    assert where.to_move == WHITE
    assert {p for p in range(361) if where.board.stones[p] == BLACK} == {from_gtp("D4"), from_gtp("Q16")}
    # HA without AB: GTP's fixed placement.
    where = position_at("(;GM[1]SZ[19]HA[4])", 0)
    assert sum(s == BLACK for s in where.board.stones) == 4 and where.to_move == WHITE


def test_setup_in_later_nodes_and_compressed_rectangles() -> None:
    record = "(;SZ[19]AB[aa:bb]PL[W];W[jj];AE[aa]AW[ss];B[kk])"
    assert sum(s == BLACK for s in position_at(record, 0).board.stones) == 4
    assert position_at(record, 0).to_move == WHITE
    after = position_at(record, 2).board
    assert after.stones[from_sgf("aa")] == EMPTY  # type: ignore[index]
    assert after.stones[from_sgf("ss")] == WHITE  # type: ignore[index]
    assert after.age(from_sgf("ss")) is None  # type: ignore[arg-type]


def test_passes_count_as_moves() -> None:
    where = position_at("(;SZ[19];B[dd];W[];B[tt];W[pp])", 3)
    assert [m.point for m in where.board.moves] == [from_sgf("dd"), None, None]
    assert where.to_move == WHITE


def test_an_explicit_side_to_move_wins() -> None:
    assert position_at(GAME, 2, WHITE).to_move == WHITE


def test_captures_happen_during_replay() -> None:
    where = position_at("(;SZ[19];B[ba];W[aa];B[ab])")
    assert where.board.stones[0] == EMPTY and where.board.prisoners[BLACK] == 1


def test_the_writer_round_trips() -> None:
    moves = [Move(BLACK, from_gtp("D4")), Move(WHITE, None), Move(BLACK, from_gtp("Q16"))]
    record = sgf.write(moves, komi=6.5)
    assert "KM[6.5]" in record
    assert position_at(record).board.moves == moves


@pytest.mark.parametrize(
    "record,move,message",
    [
        ("", None, "sgf: no game tree"),
        ("hello", None, "sgf: no game tree"),
        ("(;SZ[19];B[dd]", None, "sgf: the record ends early"),
        ("(;SZ[19];B[dd", None, "never closed"),
        ("(;SZ[19];B)", None, "sgf: unexpected ')' at line 1, column 11; expected '[' to open a value of property B"),
        ("()", None, "has no nodes"),
        ("(;SZ[13];B[dd])", None, "sgf: board size SZ[13]; only 19x19"),
        ("(;GM[2])", None, "not a game of Go"),
        ("(;SZ[19];B[dd];W[dd])", None, "sgf: move 2 (W[dd]): white D16 is illegal: the point is occupied"),
        ("(;SZ[19];B[zz])", None, "sgf: node 1, B: [zz] is not a point"),
        ("(;SZ[19]AB[ba][ab]AW[aa])", None, "white stone at A19 has no liberties"),
        ("(;SZ[19]HA[x])", None, "HA[x] is not a number"),
        ("(;SZ[19]PL[red])", None, "PL[red] is not B or W"),
        ("(;SZ[19];B[dd];W[pp])", 3, "move_number: 3, but the record has 2 moves; expected 0 to 2"),
    ],
)
def test_bad_records(record: str, move: int | None, message: str) -> None:
    with pytest.raises(PositionError, match=None) as caught:
        position_at(record, move)
    assert message in str(caught.value)


def test_records_longer_than_any_game_are_refused() -> None:
    record = "(;SZ[19]" + ";B[];W[]" * 2501 + ")"
    with pytest.raises(PositionError, match="sgf: 5,002 moves; at most 5,000"):
        position_at(record)
    assert position_at("(;SZ[19]" + ";B[];W[]" * 2500 + ")").move_number == 5000


def test_text_board_with_spaces_and_blank_lines() -> None:
    rows = ["X O" + " ." * 17] + [" ".join("." * 19)] * 18
    where = from_text("\n" + "\n".join(rows) + "\n\n", WHITE)
    assert list(where.board.stones[:3]) == [BLACK, WHITE, EMPTY]
    assert where.to_move == WHITE and where.move_number == 0


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "board: empty"),
        ("\n".join(["." * 19] * 18), "board: 18 lines; expected 19 lines of 19 points each"),
        ("\n".join(["." * 19] * 20), "board: 20 lines"),
        ("\n".join(["." * 19] * 5 + ["." * 18] + ["." * 19] * 13), "board: line 6 has 18 points"),
        ("\n".join(["." * 19] * 2 + ["..Z" + "." * 16] + ["." * 19] * 16), "board: line 3, point 3 is 'Z'"),
        ("\n".join(["OX" + "." * 17, "X" + "." * 18] + ["." * 19] * 17), "board: the white stone at A19"),
    ],
)
def test_bad_text_boards(text: str, message: str) -> None:
    with pytest.raises(PositionError) as caught:
        from_text(text, BLACK)
    assert message in str(caught.value)
