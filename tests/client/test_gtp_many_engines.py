"""64 GTP engines at once against one real server: the engines of ``cnnserve gtp`` (cnnserve.client.gtp's
ServerPolicy over one channel, as 64 GUIs or referees would drive them), each playing both
colours of its own game by genmove and asking for its analysis on the way. Every move is legal on
a board replayed beside it, every analysis lists legal moves, and the server's batch-size metrics
show that the 64 engines' positions shared the model's runs. Timings are never asserted."""

from __future__ import annotations

import random
import threading

import grpc
from harness import Served, batched, scrape

from cnnserve.client.gtp import ServerPolicy
from cnnserve.client.gtp_engine import Engine
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go.board import BLACK, WHITE, Board, parse_color
from cnnserve.go.coords import from_gtp, to_gtp

MODEL = "alphago_policy"
ENGINES = 64
MOVES = 16


def play_one(number: int, stub: pb_grpc.CnnServeStub, address: str, start: threading.Barrier) -> list[str]:
    """One engine's game: a seeded random opening by ``play`` (so that no two games are alike),
    then genmove for both colours, an lz-analyze before every fourth; the problems found."""
    engine = Engine(ServerPolicy(stub, address, MODEL, timeout=120))
    referee = Board()
    rng = random.Random(number)
    problems: list[str] = []
    for k in range(4):
        color = (BLACK, WHITE)[k % 2]
        p = rng.choice(referee.legal_points(color))
        referee.play(color, p)
        engine.handle(f"play {'bw'[k % 2]} {to_gtp(p)}")
    start.wait()
    for k in range(MOVES):
        side = "bw"[k % 2]
        if k % 4 == 0:
            # No interval: the info line once, as handle() opens it (serve() would repeat it).
            opened = engine.handle(f"lz-analyze {side}")
            words = (opened or "").split()
            listed = [from_gtp(words[i + 1]) for i, word in enumerate(words[:-1]) if word == "move"]
            if not opened or not opened.startswith("=") or not listed:
                problems.append(f"engine {number}: lz-analyze answered {opened!r}")
            elif not all(p is not None and referee.is_legal(parse_color(side), p) for p in listed):
                problems.append(f"engine {number}: lz-analyze listed an illegal move: {opened[:200]!r}")
            engine.handle("")  # (what serve() does when the next line arrives is tested elsewhere)
        reply = engine.handle(f"genmove {side}") or ""
        if not reply.startswith("= ") or not reply.endswith("\n\n"):
            problems.append(f"engine {number}, move {k}: genmove answered {reply!r}")
            break
        move = from_gtp(reply[2:].strip())
        if move is not None and not referee.is_legal(parse_color(side), move):
            problems.append(f"engine {number}, move {k}: {reply.strip()} is illegal")
            break
        referee.play(parse_color(side), move)
    if engine.board.stones != referee.stones:
        problems.append(f"engine {number}: its board and the referee's differ")
    return problems


def test_64_engines_play_at_once_and_share_the_models_runs(server: Served) -> None:
    before = scrape(server.metrics_address)
    start = threading.Barrier(ENGINES)
    results: dict[int, list[str]] = {}
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = pb_grpc.CnnServeStub(channel)

        def run(number: int) -> None:
            try:
                results[number] = play_one(number, stub, server.grpc_address, start)
            except Exception as exc:  # reported below, with the engine's number
                results[number] = [f"engine {number}: {type(exc).__name__}: {exc}"]

        threads = [threading.Thread(target=run, args=(n,)) for n in range(ENGINES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads)
    problems = [p for n in range(ENGINES) for p in results.get(n, [f"engine {n}: no result"])]
    assert not problems, problems[:10]
    items, runs = batched(before, scrape(server.metrics_address), MODEL)
    # Each genmove and each analysis asks once per position (an analysis before a genmove of the
    # same colour and position shares the genmove's call): at least a call a move.
    assert items >= ENGINES * MOVES
    assert runs < items, f"{items:.0f} positions in {runs:.0f} runs: no run was shared"
