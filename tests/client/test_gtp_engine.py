"""The GTP engine on its own, with a stand-in for the policy (the real one is tested against the
server and GNU Go in tests/client/test_gtp_gnugo.py)."""

import io

import cnnserve
from cnnserve.client.gtp_engine import COMMANDS, Engine, clean
from cnnserve.go.board import BLACK, WHITE, Board
from cnnserve.go.coords import POINTS, from_gtp, to_gtp
from cnnserve.go.position import from_sgf


class FirstLegal:
    """A policy whose probabilities fall with the index over the legal points (so genmove plays
    the first legal point in index order); remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []

    def __call__(self, board: Board, color: int, record: str) -> list[float]:
        self.asked.append((color, record))
        legal = set(board.legal_points(color))
        weights = [float(POINTS - p) if p in legal else 0.0 for p in range(POINTS)]
        total = sum(weights) or 1.0
        return [w / total for w in weights]


def only(point: str) -> list[float]:
    """All the probability on one point."""
    p = from_gtp(point)
    return [1.0 if q == p else 0.0 for q in range(POINTS)]


def talk(engine: Engine, *lines: str) -> str:
    out = io.StringIO()
    engine.serve(lines, out)
    return out.getvalue()


def test_administrative_commands() -> None:
    engine = Engine(FirstLegal())
    assert talk(engine, "protocol_version") == "= 2\n\n"
    assert talk(engine, "name", "version") == f"= cnnserve\n\n= {cnnserve.__version__}\n\n"
    assert talk(engine, "known_command genmove", "known_command fly") == "= true\n\n= false\n\n"
    assert talk(engine, "list_commands") == "= " + "\n".join(COMMANDS) + "\n\n"


def test_ids_are_echoed_in_success_and_error() -> None:
    engine = Engine(FirstLegal())
    assert talk(engine, "7 name", "8 fly") == "=7 cnnserve\n\n?8 unknown command\n\n"


def test_comments_blank_lines_and_control_characters_are_ignored() -> None:
    assert clean("  play\tb d4  # a comment\r") == "play b d4"
    engine = Engine(FirstLegal())
    assert talk(engine, "", "# only a comment", "name\r") == "= cnnserve\n\n"


def test_play_and_genmove_keep_the_board() -> None:
    chooser = FirstLegal()
    engine = Engine(chooser)
    assert talk(engine, "komi 6.5", "play black D4", "genmove w") == "=\n\n=\n\n= A19\n\n"
    ((color, record),) = chooser.asked
    assert color == WHITE and "KM[6.5]" in record
    where = from_sgf(record)  # the record the chooser got is the game before its move
    assert [m.point for m in where.board.moves] == [from_gtp("D4")] and where.to_move == WHITE
    assert engine.board.stones[from_gtp("D4")] == BLACK  # type: ignore[index]
    assert engine.board.stones[from_gtp("A19")] == WHITE  # type: ignore[index]
    assert talk(engine, "play w pass") == "=\n\n"
    assert engine.board.moves[-1].point is None


def test_illegal_and_malformed_moves_get_errors_and_the_engine_goes_on() -> None:
    engine = Engine(FirstLegal())
    replies = talk(
        engine,
        "play b D4",
        "play w D4",  # occupied
        "play b I5",  # no column I
        "play purple D5",
        "play b",
        "genmove",
        "boardsize 13",
        "boardsize x",
        "komi lots",
        "undo",
        "name",
    )
    assert replies.split("\n\n")[:-1] == [
        "=",
        "? illegal move",
        "? syntax error: invalid vertex",
        "? syntax error: invalid color",
        "? syntax error: expected play COLOR VERTEX",
        "? syntax error: expected genmove COLOR",
        "? unacceptable size",
        "? boardsize not an integer",
        "? komi not a float",
        "=",  # undoes D4
        "= cnnserve",
    ]
    assert engine.board.stones == Board().stones


def test_undo_restores_captures_and_fails_when_there_is_nothing_to_undo() -> None:
    engine = Engine(FirstLegal())
    talk(engine, "play w A19", "play b B19", "play b A18")  # black captures A19
    assert engine.board.stones[0] == 0
    assert talk(engine, "undo") == "=\n\n"
    assert engine.board.stones[0] == WHITE
    assert talk(engine, "undo", "undo", "undo") == "=\n\n=\n\n? cannot undo\n\n"


def test_suicide_and_ko_are_illegal_plays() -> None:
    engine = Engine(FirstLegal())
    talk(engine, "play b B19", "play b A18")
    assert talk(engine, "play w A19") == "? illegal move\n\n"


def test_a_failing_policy_is_an_error_reply_not_a_dead_engine() -> None:
    def broken(board: Board, color: int, record: str) -> list[float]:
        raise RuntimeError("UNAVAILABLE: server gone")

    engine = Engine(broken)
    assert talk(engine, "genmove b", "name") == "? cannot generate a move: UNAVAILABLE: server gone\n\n= cnnserve\n\n"
    assert engine.board.moves == []


def test_genmove_plays_only_legal_moves_whatever_the_policy_says() -> None:
    # All the probability on an occupied point: the engine plays the most probable legal move
    # (here the first in index order, all others being equally improbable).
    engine = Engine(lambda board, color, record: only("D4"))
    talk(engine, "play w D4")
    assert talk(engine, "genmove b") == "= A19\n\n"


def test_a_policy_that_answers_the_wrong_size_is_an_error_reply() -> None:
    engine = Engine(lambda board, color, record: [0.5, 0.5])
    assert talk(engine, "genmove b") == "? cannot generate a move: the policy gave 2 probabilities; expected 361\n\n"
    assert engine.board.moves == []


def test_genmove_skips_its_own_eyes_and_passes_when_nothing_else_is_left() -> None:
    # Black owns the whole board but for two one-point eyes at A19 and C19; the policy likes them.
    engine = Engine(lambda board, color, record: only("A19"))
    black = [p for p in range(POINTS) if p not in (from_gtp("A19"), from_gtp("C19"))]
    engine.handle("set_free_handicap " + " ".join(to_gtp(p) for p in black))
    assert talk(engine, "genmove b") == "= pass\n\n"
    assert engine.board.moves[-1].point is None


def test_after_the_opponents_pass_genmove_plays_only_where_the_area_is_undecided() -> None:
    # Black walls in the left columns with an enclosure at A19-C17; the right side is open.
    wall = [f"{c}{r}" for c in "ABCD" for r in range(1, 17)] + ["D17", "D18", "D19"]
    engine = Engine(lambda board, color, record: only("B18"))
    engine.handle("set_free_handicap " + " ".join(wall))
    engine.handle("play w Q16")
    assert talk(engine, "genmove b") == "= B18\n\n"  # the opponent has not passed: the policy rules
    engine.handle("undo")
    engine.handle("play w pass")
    reply = talk(engine, "genmove b")
    assert reply not in ("= B18\n\n", "= pass\n\n")  # not inside its own enclosure
    assert from_gtp(reply[2:].strip()) not in {from_gtp(f"{c}{r}") for c in "ABC" for r in (17, 18, 19)}


def test_genmove_passes_on_a_settled_board_whatever_the_policy_says() -> None:
    # Black's wall along column K, white's beyond it, each with eyes; the policy likes black's eye.
    engine = Engine(lambda board, color, record: only("A19"))
    black = [f"{c}{r}" for c in "ABCDEFGHJK" for r in range(1, 20) if f"{c}{r}" not in ("A19", "C19")]
    white = [f"{c}{r}" for c in "LMNOPQRST" for r in range(1, 20) if f"{c}{r}" not in ("T1", "R1")]
    engine.handle("set_free_handicap " + " ".join(black))
    for vertex in white:
        engine.board.place(WHITE, from_gtp(vertex))
    assert talk(engine, "genmove w") == "= pass\n\n"
    assert talk(engine, "genmove b") == "= pass\n\n"


def test_genmove_with_no_probability_anywhere_still_plays_a_legal_move() -> None:
    engine = Engine(lambda board, color, record: [0.0] * POINTS)
    assert talk(engine, "genmove b") == "= A19\n\n"


def test_showboard_draws_the_stones_with_coordinates() -> None:
    engine = Engine(FirstLegal())
    reply = talk(engine, "play b A1", "play w T19", "showboard")
    lines = reply.split("\n\n")[2].splitlines()
    assert lines[0] == "="
    assert lines[1].split() == list("ABCDEFGHJKLMNOPQRST")
    assert lines[2].startswith("19 . .") and lines[2].rstrip().endswith("O 19")
    assert lines[20].startswith(" 1 X .")
    assert "2 moves played" in lines[-1]


def test_clear_board_and_quit() -> None:
    engine = Engine(FirstLegal())
    replies = talk(engine, "play b D4", "clear_board", "quit", "name")
    assert replies == "=\n\n=\n\n=\n\n"  # nothing read after quit
    assert engine.done and engine.board.moves == []


def test_fixed_handicap_places_the_stones_and_the_record_says_white_moves() -> None:
    chooser = FirstLegal()
    engine = Engine(chooser)
    assert talk(engine, "fixed_handicap 4") == "= D4 Q16 D16 Q4\n\n"
    assert sum(s == BLACK for s in engine.board.stones) == 4
    talk(engine, "genmove white")
    ((_, record),) = chooser.asked
    where = from_sgf(record, 0)
    assert where.to_move == WHITE and where.board.stones[from_gtp("Q4")] == BLACK  # type: ignore[index]
    assert talk(engine, "fixed_handicap 2") == "? board not empty\n\n"


def test_free_handicap_commands_and_their_errors() -> None:
    engine = Engine(FirstLegal())
    assert talk(engine, "place_free_handicap 3") == "= D4 Q16 D16\n\n"
    assert talk(engine, "clear_board", "set_free_handicap C3 R17 K10") == "=\n\n=\n\n"
    assert engine.handicap == [from_gtp(v) for v in ("C3", "R17", "K10")]
    engine = Engine(FirstLegal())
    replies = talk(
        engine,
        "fixed_handicap 1",
        "fixed_handicap 10",
        "fixed_handicap x",
        "set_free_handicap C3",  # one stone is not a handicap
        "set_free_handicap C3 C3",
        "set_free_handicap C3 I9",
        "set_free_handicap C3 pass",
    )
    assert replies.split("\n\n")[:-1] == [
        "? invalid number of stones",
        "? invalid number of stones",
        "? syntax error: expected fixed_handicap NUMBER",
        "? bad vertex list",
        "? bad vertex list",
        "? bad vertex list",
        "? bad vertex list",
    ]
    assert engine.board.stones == Board().stones
