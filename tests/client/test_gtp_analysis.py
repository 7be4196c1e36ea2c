"""The analysis commands of the GTP engine (lz-analyze, kata-analyze, lz-genmove_analyze,
kata-genmove_analyze) with a stand-in policy: the info lines parse by each engine's rules, the
streaming stops at the next line and that command is answered, the interval repeats the line.
Through a real ``cnnserve gtp`` and server: tests/client/test_gtp_gnugo.py."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import pytest
from gtpgame import kata_float, lz_int, parse_infos

from cnnserve.client.gtp_analysis import VISITS_SCALE
from cnnserve.client.gtp_engine import COMMANDS, Engine
from cnnserve.go.board import BLACK, WHITE, Board
from cnnserve.go.coords import POINTS, from_gtp

ANALYSIS = ("lz-analyze", "lz-genmove_analyze", "kata-analyze", "kata-genmove_analyze")
# KataGo's info fields, in the order it prints them (docs/GTP_Extensions.md; cpp/command/gtp.cpp)
KATA_FIELDS = ["move", "visits", "utility", "winrate", "scoreMean", "scoreStdev", "scoreLead", "scoreSelfplay",
               "prior", "lcb", "utilityLcb", "order", "pv"]  # fmt: skip
LZ_FIELDS = ["move", "visits", "winrate", "prior", "lcb", "order", "pv"]  # Leela Zero's get_info_string


class Peaked:
    """D4 0.5, Q16 0.3, C3 0.1 (when legal), the rest shared by the other legal points; counts
    its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.favourites = {from_gtp("D4"): 0.5, from_gtp("Q16"): 0.3, from_gtp("C3"): 0.1}

    def __call__(self, board: Board, color: int, record: str) -> list[float]:
        self.calls += 1
        legal = [p for p in range(POINTS) if board.stones[p] == 0 and board.is_legal(color, p)]
        favourites = self.favourites
        rest = [p for p in legal if p not in favourites]
        spare = 1.0 - sum(q for p, q in favourites.items() if p in legal)
        values = [0.0] * POINTS
        for p in legal:
            values[p] = favourites.get(p, spare / len(rest))
        return values


def talk(engine: Engine, *lines: str) -> str:
    out = io.StringIO()
    engine.serve(lines, out)
    return out.getvalue()


def responses(text: str) -> list[str]:
    """The GTP responses in an output: each ends with an empty line."""
    assert text.endswith("\n\n"), repr(text[-80:])
    return text[:-2].split("\n\n")


def test_the_commands_are_listed_and_known() -> None:
    engine = Engine(Peaked())
    listed = talk(engine, "list_commands")[2:-2].split("\n")
    for command in ANALYSIS:
        assert command in COMMANDS and command in listed
        assert talk(engine, f"known_command {command}") == "= true\n\n"
    assert talk(engine, "name") == "= cnnserve\n\n"


def test_lz_analyze_prints_leela_zeros_integer_fields_on_one_line() -> None:
    engine = Engine(Peaked())
    (reply, name) = responses(talk(engine, "lz-analyze b 100", "name"))
    head, line = reply.split("\n")
    assert head == "=" and name == "= cnnserve"
    infos = parse_infos(line, lz_int)
    assert [info["move"] for info in infos] == ["D4", "Q16", "C3"]  # only moves with a visit
    for order, (info, prior) in enumerate(zip(infos, (0.5, 0.3, 0.1), strict=True)):
        assert list(info) == LZ_FIELDS  # Leela Zero's order
        assert info["visits"] == round(prior * VISITS_SCALE)
        assert info["prior"] == int(prior * 10000)
        assert info["winrate"] == 5000 and info["lcb"] == 5000
        assert info["order"] == order and info["pv"] == [info["move"]]


def test_kata_analyze_prints_katagos_fields_as_floats() -> None:
    engine = Engine(Peaked())
    (reply,) = responses(talk(engine, "kata-analyze 100"))
    head, line = reply.split("\n")
    infos = parse_infos(line, kata_float)
    assert head == "=" and [info["move"] for info in infos] == ["D4", "Q16", "C3"]
    for order, (info, prior) in enumerate(zip(infos, (0.5, 0.3, 0.1), strict=True)):
        assert list(info) == KATA_FIELDS
        assert info["prior"] == pytest.approx(prior, rel=1e-5) and info["visits"] == round(prior * VISITS_SCALE)
        assert info["winrate"] == 0.5 and info["lcb"] == 0.5
        assert info["scoreLead"] == info["scoreMean"] == info["scoreSelfplay"] == info["utility"] == 0
        assert info["order"] == order and info["pv"] == [info["move"]]
    assert " winrate 0.5 " in line  # a decimal point: Sabaki reads "5000" as 50.00%, "0.5" as 50%
    (reply,) = responses(talk(engine, "kata-analyze 100 pvVisits true ownership true rootInfo false"))
    assert [info["pvVisits"] for info in parse_infos(reply.split("\n")[1], kata_float)] == [500, 300, 100]


def test_the_forms_leela_zero_and_katago_accept() -> None:
    engine = Engine(Peaked())
    for command in ["lz-analyze", "lz-analyze 50", "lz-analyze b 50", "lz-analyze interval 50", "lz-analyze 50 w",
                    "lz-analyze B interval 50 minmoves 2", "kata-analyze W 12.5", "kata-analyze b interval 0.5",
                    "lz-analyze avoid b D4,Q16 1 50", "kata-analyze allow white D4,C3:D5 3"]:  # fmt: skip
        reply = talk(engine, command)
        assert reply.startswith("=\ninfo move ") and reply.endswith("\n\n"), (command, reply)
        assert len(responses(reply)) == 1
    for command, why in [
        ("lz-analyze purple", "unknown key 'purple'"),
        ("lz-analyze minmoves", "minmoves needs a value"),
        ("lz-analyze minmoves x", "expected a number of moves"),
        ("lz-analyze interval -5", "interval -5"),
        ("lz-analyze avoid b D4 0", "until-depth of 1 or more"),
        ("lz-analyze avoid b I9 1", "'I9' is not a vertex"),
        ("lz-analyze avoid x D4 1", "expected a colour"),
        ("lz-analyze avoid b D4", "avoid needs COLOR VERTICES UNTIL_DEPTH"),
        ("lz-analyze allow b D4 1 avoid b Q16 1", "not together with avoid"),
        ("lz-analyze ownership true", "unknown key 'ownership'"),  # KataGo's keys are for kata- only
        ("kata-analyze ownership maybe", "expected true or false"),
    ]:
        error, name = responses(talk(engine, command, "name"))
        assert error.startswith("? cannot parse analyze tags: ") and why in error, (command, error)
        assert name == "= cnnserve"


def test_minmoves_maxmoves_avoid_and_allow_choose_the_moves_listed() -> None:
    engine = Engine(Peaked())

    def moves(command: str) -> list[object]:
        (reply,) = responses(talk(engine, command))
        lines = reply.split("\n")
        return [info["move"] for info in parse_infos(lines[1], lz_int)] if len(lines) > 1 else []

    assert moves("lz-analyze b 10 minmoves 5") == ["D4", "Q16", "C3", "A19", "B19"]  # zero-visit moves next
    assert moves("lz-analyze b 10 maxmoves 2") == ["D4", "Q16"]
    assert moves("lz-analyze b 10 avoid b D4,pass 1") == ["Q16", "C3"]
    assert moves("lz-analyze b 10 avoid w D4 1") == ["D4", "Q16", "C3"]  # white's avoid: not black's root
    assert moves("lz-analyze b 10 allow b Q16,C3:C4 1") == ["Q16", "C3"]
    assert moves("lz-analyze b 10 allow b A1:T19 1 minmoves 4") == ["D4", "Q16", "C3", "A19"]
    assert moves("lz-analyze b 10 avoid b A1:T19 1") == []  # nothing to list: "=" and the blank line
    assert talk(engine, "lz-analyze b 10 avoid b A1:T19 1") == "=\n\n"
    talk(engine, "play b D4")
    after = moves("lz-analyze w 10")  # D4 occupied: its 0.5 goes to the others, each with visits now
    assert after[:2] == ["Q16", "C3"] and "D4" not in after and len(after) == POINTS - 1


def test_analysis_stops_at_the_next_command_which_is_then_answered() -> None:
    engine = Engine(Peaked())
    replies = responses(talk(engine, "lz-analyze b 10", "play b D4", "7 kata-analyze w 10", "", "name", "showboard"))
    assert replies[0].startswith("=\ninfo move D4 ") and replies[1] == "="
    assert replies[2].startswith("=7\ninfo move Q16 ") and replies[3] == "= cnnserve"
    assert engine.board.stones[from_gtp("D4")] == BLACK  # type: ignore[index]
    assert replies[4].startswith("=\n   A B C")
    # The end of the input ends an analysis with its blank line too; quit is answered after it.
    assert talk(engine, "lz-analyze 10") == talk(engine, "lz-analyze 0")
    assert responses(talk(engine, "kata-analyze 10", "quit", "name"))[1] == "="


def paced(*items: str | float) -> Iterator[str]:
    """Input lines, with pauses (seconds) between them, as a GUI types them."""
    for item in items:
        if isinstance(item, str):
            yield item
        else:
            time.sleep(item)


def test_the_interval_repeats_the_line_and_nothing_interleaves() -> None:
    policy = Peaked()
    engine = Engine(policy)
    out = io.StringIO()
    engine.serve(paced("lz-analyze b 10", 1.0, "name", "kata-analyze b 0", 0.3, "name"), out)
    first, name, once, name_again = responses(out.getvalue())
    lines = first.split("\n")
    assert lines[0] == "=" and name == name_again == "= cnnserve"
    # Every 10 cs for about a second: about 10 lines. Loosely: it repeats, and is no busy loop.
    assert 3 <= len(lines) - 1 <= 30, len(lines)
    assert len(set(lines[1:])) == 1 and parse_infos(lines[1], lz_int)  # whole lines, all alike
    assert len(once.split("\n")) == 2  # interval 0: the line once, however long the wait
    assert policy.calls == 1  # one server call for the position, not one per line


def test_genmove_and_the_analysis_share_one_policy_call_per_position() -> None:
    policy = Peaked()
    engine = Engine(policy)
    talk(engine, "lz-analyze b 10", "kata-analyze b 10", "lz-analyze b 10 maxmoves 1")
    assert policy.calls == 1  # black's position, asked once
    assert talk(engine, "genmove b") == "= D4\n\n" and policy.calls == 1  # the same position and colour
    talk(engine, "lz-analyze w 10", "kata-genmove_analyze w")
    assert policy.calls == 2  # white's position after D4
    talk(engine, "undo", "undo", "lz-analyze w 10", "lz-analyze b 10")
    assert policy.calls == 4  # only the latest is kept: white, then black again before D4


@pytest.mark.parametrize(("command", "number"), [("lz-genmove_analyze", lz_int), ("kata-genmove_analyze", kata_float)])
def test_genmove_analyze_plays_and_ends_with_play(command: str, number: Callable[[str], float]) -> None:
    engine = Engine(Peaked())
    (reply,) = responses(talk(engine, f"{command} b 10"))
    head, line, play = reply.split("\n")
    assert head == "=" and play == "play D4"
    assert [info["move"] for info in parse_infos(line, number)] == ["D4", "Q16", "C3"]
    assert engine.board.stones[from_gtp("D4")] == BLACK  # type: ignore[index]
    # Without a colour: the side to move (white now); avoid is honoured by the move too.
    (reply,) = responses(talk(engine, f"3 {command} avoid w Q16 1"))
    assert reply.startswith("=3\ninfo move C3 ") and reply.endswith("\nplay C3")
    assert engine.board.stones[from_gtp("C3")] == WHITE  # type: ignore[index]
    # Not streamed: the next command is not needed to end it, and it is answered after.
    assert responses(talk(engine, f"{command} b 10", "name"))[1] == "= cnnserve"
    assert talk(engine, f"{command} b 10 avoid b A1:T19 1") == "=\nplay pass\n\n"


def test_a_failing_policy_is_an_error_reply_for_the_analysis() -> None:
    def broken(board: Board, color: int, record: str) -> list[float]:
        raise RuntimeError("UNAVAILABLE: server gone")

    engine = Engine(broken)
    assert talk(engine, "lz-analyze 10", "name") == "? cannot analyze: UNAVAILABLE: server gone\n\n= cnnserve\n\n"
    assert talk(engine, "kata-genmove_analyze b") == "? cannot generate a move: UNAVAILABLE: server gone\n\n"
    assert engine.board.moves == []


def test_the_version_reply_can_be_overridden_for_lizzie() -> None:
    """Lizzie reads the version of an engine not named KataGo as Leela Zero's and warns below
    0.15; KataGo's -override-version answers that, and so does cnnserve gtp --override-version."""
    from cnnserve.cli import build_parser

    assert talk(Engine(Peaked(), version="0.17"), "name", "version") == "= cnnserve\n\n= 0.17\n\n"
    args = build_parser(["gtp"]).parse_args(["gtp", "--override-version", "0.17"])
    assert args.override_version == "0.17"
    assert build_parser(["gtp"]).parse_args(["gtp"]).override_version is None
