"""``cnnserve gtp`` against GNU Go, through a real server: whole games, every move of ours legal by
GNU Go's ``is_legal`` (with analysis commands interleaved, as a GUI sends them), and on positions
of those games the liberties planes agree with GNU Go's ``countlib`` and the legal points with its
``is_legal``; the analysis commands through a real ``cnnserve gtp`` against the server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from gtpgame import Game, GtpProcess, gnugo_path, kata_float, lz_int, parse_infos, play_game
from harness import Served

from cnnserve.client.gtp_analysis import VISITS_SCALE
from cnnserve.client.gtp_engine import HISTORY, Engine
from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go import features, sgf
from cnnserve.go.board import BLACK, EMPTY, WHITE, Board, parse_color
from cnnserve.go.coords import POINTS, from_gtp, to_gtp

ROOT = Path(__file__).resolve().parents[2]
LIBERTIES = next(f for f in features.FEATURES if f.name == "liberties")
AFTER = next(f for f in features.FEATURES if f.name == "liberties_after_move")
# GNU Go's weakest level answers genmove in tens of milliseconds; a game stays near a minute.
GNUGO_LEVEL = "0"
MAX_MOVES = 700  # far beyond a real game: reaching it means the game would not end
CHECK_EVERY = 60  # moves between positions compared point by point with GNU Go
ANALYSE_EVERY = 15  # moves between analyses of GNU Go's position by our engine (and genmove_analyze)


@pytest.fixture
def gnugo() -> Iterator[GtpProcess]:
    engine = GtpProcess([gnugo_path(), "--mode", "gtp", "--level", GNUGO_LEVEL, "--seed", "7"], "GNU Go")
    yield engine
    engine.close()


@pytest.fixture
def ours(server: Served) -> Iterator[GtpProcess]:
    argv = [sys.executable, "-m", "cnnserve", "gtp", "--server", server.grpc_address, "--model", "alphago_policy"]
    engine = GtpProcess(argv, "cnnserve gtp", cwd=ROOT)
    yield engine
    engine.close()


def handicap_points(game: Game) -> list[int]:
    points = [from_gtp(v) for v in game.handicap]
    return [p for p in points if p is not None]


def replay(game: Game) -> Board:
    board = Board()
    for p in handicap_points(game):
        board.place(BLACK, p)
    for colour, vertex in game.moves:
        board.play(parse_color(colour), from_gtp(vertex))
    return board


def compare_with_gnugo(game: Game, gnugo: GtpProcess, stub: pb_grpc.CnnServeStub) -> int:
    """Liberties planes against countlib for every stone; legality against is_legal and the
    liberties-after-move planes against accuratelib for every empty point (and the points the
    server's Policy reply leaves above zero are legal); returns the points compared."""
    board = replay(game)
    to_move = BLACK if game.moves[-1][0] == "white" else WHITE
    planes = features.planes(board, to_move)
    liberties = planes[LIBERTIES.start : LIBERTIES.start + LIBERTIES.count].reshape(LIBERTIES.count, POINTS)
    after = planes[AFTER.start : AFTER.start + AFTER.count].reshape(AFTER.count, POINTS)
    reply = stub.Policy(
        pb.PolicyRequest(
            model_name="alphago_policy",
            sgf=sgf.write(board.moves, setup={BLACK: handicap_points(game)}),
            to_move=pb.BLACK if to_move == BLACK else pb.WHITE,
        ),
        timeout=30,
    )
    served = np.array(reply.probabilities) > 0
    legal_by_gnugo = []
    colour = "black" if to_move == BLACK else "white"
    for p in range(POINTS):
        vertex = to_gtp(p)
        if board.stones[p] == EMPTY:
            legal = gnugo.send(f"is_legal {colour} {vertex}") == "1"
            assert board.is_legal(to_move, p) == legal, f"move {len(game.moves)}: {colour} {vertex} legal={legal}"
            assert not liberties[:, p].any()
            legal_by_gnugo.append(legal)
            if served[p]:
                assert legal, f"the server gives illegal {colour} {vertex} a probability"
            if legal:
                count = len(gnugo.send(f"accuratelib {colour} {vertex}").split())
                expected = np.zeros(AFTER.count)
                expected[min(count, AFTER.count) - 1] = 1
                assert (after[:, p] == expected).all(), f"move {len(game.moves)}: {colour} {vertex} would have {count}"
            else:
                assert not after[:, p].any()
        else:
            count = int(gnugo.send(f"countlib {vertex}"))
            expected = np.zeros(LIBERTIES.count)
            expected[min(count, LIBERTIES.count) - 1] = 1
            assert (liberties[:, p] == expected).all(), f"move {len(game.moves)}: {vertex} has {count} liberties"
    assert reply.legal_moves == sum(legal_by_gnugo)
    return POINTS


@pytest.mark.parametrize(("our_colour", "handicap"), [("black", 0), ("white", 0), ("black", 4)])
def test_a_whole_game_against_gnugo(
    our_colour: str, handicap: int, ours: GtpProcess, gnugo: GtpProcess, server: Served
) -> None:
    compared = []
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.CnnServeStub(channel)

        def check(game: Game) -> None:
            if len(game.moves) % CHECK_EVERY == 0:
                compared.append(compare_with_gnugo(game, gnugo, stub))

        game = play_game(
            ours, gnugo, our_colour, max_moves=MAX_MOVES, handicap=handicap, on_move=check, analyse_every=ANALYSE_EVERY
        )
    assert game.end, f"no end after {MAX_MOVES} moves"
    assert game.analyses > 0 and game.analysed_moves > 0
    ours_played = [v for c, v in game.moves if c == our_colour]
    assert game.checked == sum(v != "PASS" for v in ours_played) > 0
    assert compared, "the game was too short to compare a position"
    # Both engines saw the same game: our engine's board is the one GNU Go shows.
    ours_board = replay(game)
    for p in range(0, POINTS, 7):
        colour = gnugo.send(f"color {to_gtp(p)}")
        assert {"empty": EMPTY, "black": BLACK, "white": WHITE}[colour] == ours_board.stones[p]
    print(
        f"\n{our_colour}, handicap {handicap}: {len(game.moves)} moves, ended by {game.end}, "
        f"{game.checked} of ours checked legal ({game.analysed_moves} by genmove_analyze), {game.analyses} analyses, "
        f"{len(compared)} positions compared point by point; GNU Go's score: {game.score}"
    )


def test_the_record_our_engine_sends_is_the_game(server: Served) -> None:
    """The engine sends the recent history, not just the stones: turn and ko reach the server,
    from a record that holds only the last 8 moves."""
    engine = Engine(lambda board, color, record: [0.0] * POINTS)
    # Eight moves in the middle, then the edge ko of tests/cnnserve/go/test_board.py, played
    # out: black takes at C18, and white may not retake at B18 at once.
    for line in ["play b K10", "play w K12", "play b M10", "play w M12", "play b H10", "play w H12", "play b O10",
                 "play w O12", "play b B19", "play w C19", "play b A18", "play w D18", "play b B17", "play w C17",
                 "play w B18", "play b C18"]:  # fmt: skip
        assert engine.handle(line) == "=\n\n", line
    record = engine.policy_record(WHITE)
    assert "B[jj]" not in record and "AB[" in record  # K10 is set up, not played
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.CnnServeStub(channel)
        reply = stub.Policy(pb.PolicyRequest(model_name="alphago_policy", sgf=record), timeout=30)
    assert reply.move_number == HISTORY and reply.to_move == pb.WHITE
    assert reply.board == engine.board.to_text()
    ko = from_gtp("B18")
    assert ko is not None and reply.probabilities[ko] == 0
    assert reply.legal_moves == POINTS - 15 - 2  # fifteen stones, the ko, and A19 (suicide for white)


def test_the_analysis_commands_through_cnnserve_gtp(ours: GtpProcess, server: Served) -> None:
    """What Sabaki and Lizzie would see: the policy of the server as info lines, repeated until
    the next line, which is then answered."""
    for command in ["boardsize 19", "clear_board", "komi 6.5", "play b D4", "play w Q16", "play b pass"]:
        ours.send(command)
    with grpc.insecure_channel(server.grpc_address) as channel:
        reply = pb_grpc.CnnServeStub(channel).Policy(
            pb.PolicyRequest(model_name="alphago_policy", sgf="(;KM[6.5];B[dp];W[pd];B[])", to_move=pb.WHITE),
            timeout=30,
        )
    lines = ours.start_analysis("lz-analyze w 10", infos=2)
    assert lines[0] == lines[1]  # the same analysis, repeated
    infos = parse_infos(lines[0], lz_int)
    # Random weights spread the probability: every legal move has a visit and is listed.
    assert len(infos) == reply.legal_moves == POINTS - 2
    for order, info in enumerate(infos):
        p = from_gtp(str(info["move"]))
        assert p is not None
        assert info["prior"] == int(reply.probabilities[p] * 10000), info  # the server's, through the engine
        assert info["visits"] == int(reply.probabilities[p] * VISITS_SCALE + 0.5)
        assert info["winrate"] == info["lcb"] == 5000 and info["order"] == order and info["pv"] == [info["move"]]
    ours.stop_analysis("kata-analyze b 10")  # the next command stops it, and is answered: here, by analysing
    assert ours.readline("kata-analyze") == "="
    kata = parse_infos(ours.readline("kata-analyze"), kata_float)
    assert len(kata) == POINTS - 2 and {info["winrate"] for info in kata} == {0.5}
    assert sum(float(str(info["prior"])) for info in kata) == pytest.approx(1, abs=1e-3)
    ours.stop_analysis("")
    *analysis, play = ours.send("lz-genmove_analyze w 10").split("\n")
    assert len(analysis) == 1 and play == f"play {infos[0]['move']}"  # white's most probable move
    assert ours.send("name") == "cnnserve"
    *analysis, play = ours.send("kata-genmove_analyze b 10 avoid b A1:T19 1").split("\n")
    assert analysis == [] and play == "play pass"
    assert ours.send("known_command kata-analyze") == "true"
