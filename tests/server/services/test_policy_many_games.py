"""64 games asking Policy at once, against one real server: the engine's own boards, the service and
the planes under concurrency.

Each game runs on a client thread of its own with its own :class:`cnnserve.go.board.Board`, sends
its whole game as an SGF record every move and plays the most probable legal move of the reply
(after a few random opening moves, seeded per game, so that no two games reach the same position:
the rows of a batch differ). The replies are checked against the client's board as they come, the
model's batch-size histogram must show runs of more than one request, and the probabilities served
from inside those shared runs must equal what the same ONNX file gives for the position alone.
Timings are never asserted.

Last, :func:`cnnserve.go.features.planes` from 8 threads at once on many positions must give
exactly what it gives called one at a time: a guard for an implementation that releases the GIL.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from harness import Served, model_total, scrape

from cnnserve.client.scrape import Samples
from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go import features, sgf
from cnnserve.go.board import BLACK, EMPTY, WHITE, Board, opponent
from cnnserve.go.coords import POINTS
from cnnserve.server.services.policy import legal_probabilities

MODEL = "alphago_policy"
GAMES = 64
MOVES = 24  # requests per game: positions after 0 to MOVES - 1 moves
OPENING = 4  # random moves (seeded by the game's number) before the policy's choice is played
WIRE = {BLACK: pb.BLACK, WHITE: pb.WHITE}


@dataclass(frozen=True)
class Asked:
    """One request of one game and what came back."""

    game: int
    board: Board  # the client's board when it asked (a copy)
    to_move: int
    probabilities: np.ndarray  # (361,) float32, as served


@dataclass(frozen=True)
class Played:
    asked: list[Asked]
    before: Samples
    after: Samples


def legal_mask(board: Board, colour: int) -> np.ndarray:
    legal = np.zeros(POINTS, bool)
    legal[board.legal_points(colour)] = True
    return legal


def play_one_game(stub: pb_grpc.CnnServeStub, game: int, start: threading.Barrier) -> list[Asked]:
    """Ask for every position of one game and play the reply's best legal move; the reply is
    checked against this client's own board (raises AssertionError or grpc.RpcError)."""
    rng = random.Random(game)
    board = Board()
    colour = BLACK
    asked: list[Asked] = []
    start.wait()
    for number in range(MOVES):
        request = pb.PolicyRequest(model_name=MODEL, sgf=sgf.write(board.moves), top_k=1)
        reply = stub.Policy(request, timeout=120)
        where = f"game {game}, move {number}"
        probabilities = np.array(reply.probabilities, dtype=np.float32)
        assert probabilities.shape == (POINTS,), where
        assert reply.move_number == number and reply.to_move == WIRE[colour], where
        legal = legal_mask(board, colour)
        assert reply.legal_moves == legal.sum(), where
        assert (probabilities[~legal] == 0).all(), f"{where}: an illegal point has a probability"
        assert probabilities[legal].sum(dtype=np.float64) == pytest.approx(1.0, abs=1e-4), where
        best = int(np.argmax(probabilities))
        assert reply.top_moves and reply.top_moves[0].probability == probabilities[best], where
        asked.append(Asked(game, board.copy(), colour, probabilities))
        choice = rng.choice(np.flatnonzero(legal).tolist()) if number < OPENING else best
        assert legal[choice], f"{where}: the chosen point {choice} is illegal on the client's board"
        board.play(colour, choice)
        colour = opponent(colour)
    return asked


@pytest.fixture(scope="module")
def played(server: Served) -> Played:
    """The 64 games, played once for the module's tests; every game must end without an error."""
    before = scrape(server.metrics_address)
    start = threading.Barrier(GAMES)
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.CnnServeStub(channel)
        with ThreadPoolExecutor(GAMES, thread_name_prefix="game") as pool:
            futures = [pool.submit(play_one_game, stub, game, start) for game in range(GAMES)]
            errors = [(game, f.exception()) for game, f in enumerate(futures) if f.exception() is not None]
    after = scrape(server.metrics_address)
    assert not errors, f"{len(errors)} of {GAMES} games failed; the first: game {errors[0][0]}: {errors[0][1]!r}"
    return Played([a for f in futures for a in f.result()], before, after)


def delta(played: Played, name: str, **labels: str) -> float:
    def value(samples: Samples) -> float:
        return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items()))

    return value(played.after) - value(played.before)


def test_64_games_at_once_are_all_answered_and_share_the_models_runs(played: Played) -> None:
    requests = GAMES * MOVES
    assert len(played.asked) == requests
    # Every game went its own way: the positions of the last round are all different.
    assert len({tuple(a.board.stones) for a in played.asked if len(a.board.moves) == MOVES - 1}) == GAMES
    # None lost, none failed: the server answered each request OK, and each went through a run once.
    answered = {lab["code"]: v for lab, v in played.after.get("cnnserve_requests_total", [])
                if lab["model"] == MODEL and lab["rpc"] == "Policy"}  # fmt: skip
    earlier = {lab["code"]: v for lab, v in played.before.get("cnnserve_requests_total", [])
               if lab["model"] == MODEL and lab["rpc"] == "Policy"}  # fmt: skip
    codes = {code: n - earlier.get(code, 0) for code, n in answered.items() if n != earlier.get(code, 0)}
    assert codes == {"OK": requests}
    assert model_total(played.after, MODEL, "cnnserve_inflight_requests") == 0
    items = delta(played, "cnnserve_batch_size_sum", model=MODEL)
    runs = delta(played, "cnnserve_batch_size_count", model=MODEL)
    assert items == requests
    # The batches were shared: some ONNX Runtime runs held more than one request.
    singles = sum(v for lab, v in played.after.get("cnnserve_batch_size_bucket", [])
                  if lab["model"] == MODEL and float(lab["le"]) == 1)  # fmt: skip
    singles -= sum(v for lab, v in played.before.get("cnnserve_batch_size_bucket", [])
                   if lab["model"] == MODEL and float(lab["le"]) == 1)  # fmt: skip
    assert runs - singles > 0, f"{requests} requests in {runs:g} runs, none holding more than one request"
    assert items / runs > 1


def test_no_cross_talk_between_the_rows_of_a_batch(played: Played, small_repo: Path) -> None:
    """Every served reply equals the same position's planes through the same ONNX file at batch 1,
    masked by the client board's own rules."""
    path = small_repo / MODEL / "1" / "model.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for asked in played.asked:
        planes = features.planes(asked.board, asked.to_move)
        (raw,) = session.run(None, {name: planes[None]})
        expected = legal_probabilities(raw[0], legal_mask(asked.board, asked.to_move))
        where = f"game {asked.game}, move {len(asked.board.moves)}"
        np.testing.assert_allclose(asked.probabilities, expected, rtol=1e-4, atol=1e-6, err_msg=where)


# -- the planes under threads ----------------------------------------------------------------------


def random_positions(games: int, seed: int, every: int = 7, longest: int = 260) -> list[tuple[Board, int]]:
    """(board, side to move) every ``every`` moves of random games that fill no own eye, so that
    groups are captured (and kos arise) as the boards fill up; both sides to move at each."""
    rng = random.Random(seed)
    positions: list[tuple[Board, int]] = []
    for _ in range(games):
        board = Board()
        colour = BLACK
        passes = 0
        for number in range(longest):
            if number % every == 0:
                positions.extend(((board.copy(), colour), (board.copy(), opponent(colour))))
            choices = [p for p in board.legal_points(colour) if not board.is_eye(colour, p)]
            point = rng.choice(choices) if choices else None
            passes = 0 if point is not None else passes + 1
            if passes == 2:
                break
            board.play(colour, point)
            colour = opponent(colour)
    return positions


def test_planes_from_8_threads_at_once_equal_the_planes_one_at_a_time() -> None:
    positions = random_positions(games=4, seed=2016, every=5)
    stones = [sum(s != EMPTY for s in board.stones) for board, _ in positions]
    played = [sum(m.point is not None for m in board.moves) for board, _ in positions]
    assert any(s < p for s, p in zip(stones, played, strict=True)), "no position with captured stones"
    expected = [features.planes(board, colour) for board, colour in positions]
    threads = 8
    start = threading.Barrier(threads)

    def compute(seed: int) -> list[tuple[int, np.ndarray]]:
        order = list(range(len(positions)))
        random.Random(seed).shuffle(order)  # each thread its own order: the same boards read at once, too
        start.wait()
        return [(i, features.planes(*positions[i])) for i in order]

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(compute, range(threads)))
    for thread, result in enumerate(results):
        assert len(result) == len(positions)
        for i, planes in result:
            assert planes.dtype == np.float32 and planes.shape == (features.PLANES, 19, 19)
            assert np.array_equal(planes, expected[i]), (
                f"thread {thread}: position {i} differs from the sequential planes"
            )
