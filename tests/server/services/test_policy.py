"""Policy end to end: the real server in a subprocess, called with our cnnserve.v1 stubs. The
reference is computed in this process: the same position's planes through ONNX Runtime on the same
file, with the illegal points zeroed by the board's own rules."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tc
from badrequests import HTTP_STATUS
from harness import Served, ServerProcess, batched, http_call, model_total, scrape, start_server

from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go import features, position
from cnnserve.go.board import BLACK, WHITE
from cnnserve.go.coords import POINTS, to_gtp
from cnnserve.server.services.policy import legal_probabilities, top_moves

GAME = Path(__file__).resolve().parents[2] / "data" / "gnugo-selfplay.sgf"
RECORD = GAME.read_text()
EMPTY_BOARD = "\n".join(["." * 19] * 19)


@pytest.fixture(scope="module")
def stub(server: Served) -> Iterator[pb_grpc.CnnServeStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield pb_grpc.CnnServeStub(channel)


@pytest.fixture(scope="module")
def session(small_repo: Path) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(small_repo / "alphago_policy" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def ask(stub: pb_grpc.CnnServeStub, **fields: object) -> pb.PolicyResponse:
    reply: pb.PolicyResponse = stub.Policy(pb.PolicyRequest(model_name="alphago_policy", **fields), timeout=60)
    return reply


# -- in process ------------------------------------------------------------------------------------


def test_illegal_points_are_zeroed_and_the_rest_renormalised() -> None:
    p = np.array([0.5, 0.2, 0.2, 0.1])
    legal = np.array([True, False, True, False])
    np.testing.assert_allclose(legal_probabilities(p, legal), [0.5 / 0.7, 0, 0.2 / 0.7, 0])
    # A model that gives every legal point zero: they share equally.
    np.testing.assert_allclose(
        legal_probabilities(np.array([0.0, 1.0, 0.0]), np.array([True, False, True])), [0.5, 0, 0.5]
    )
    assert not legal_probabilities(p, np.zeros(4, bool)).any()


def test_top_moves_are_best_first_with_ties_in_index_order_and_skip_zeros() -> None:
    assert top_moves(np.array([0.1, 0.4, 0.0, 0.4, 0.1]), 10) == [(1, 0.4), (3, 0.4), (0, 0.1), (4, 0.1)]
    assert top_moves(np.array([0.1, 0.9]), 1) == [(1, 0.9)]


# -- the server ------------------------------------------------------------------------------------


@pytest.mark.parametrize("move", [0, 30, 120])
def test_policy_equals_planes_plus_onnxruntime_in_process(
    stub: pb_grpc.CnnServeStub, session: ort.InferenceSession, move: int
) -> None:
    reply = ask(stub, sgf=RECORD, move_number=move, top_k=10)
    where = position.from_sgf(RECORD, move)
    planes = features.planes(where.board, where.to_move)
    (raw,) = session.run(None, {"planes": planes[None]})
    legal = np.array([where.board.is_legal(where.to_move, p) for p in range(POINTS)])
    expected = legal_probabilities(raw[0], legal)
    got = np.array(reply.probabilities)
    assert got.shape == (POINTS,)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert (got[~legal] == 0).all() and got[legal].min() > 0
    assert got.sum() == pytest.approx(1.0, abs=1e-5)
    assert reply.legal_moves == legal.sum()
    assert reply.move_number == move
    assert reply.to_move == (pb.BLACK if where.to_move == BLACK else pb.WHITE)
    assert reply.board == where.board.to_text()
    assert reply.trained is False  # alphago_policy's weights are random
    best = [(m.index, m.vertex) for m in reply.top_moves]
    assert best == [(p, to_gtp(p)) for p, _ in top_moves(expected, 10)]
    assert [m.probability for m in reply.top_moves] == sorted((m.probability for m in reply.top_moves), reverse=True)


def test_the_record_decides_the_side_unless_told(stub: pb_grpc.CnnServeStub) -> None:
    assert ask(stub, sgf=RECORD, move_number=31).to_move == pb.WHITE
    told = ask(stub, sgf=RECORD, move_number=31, to_move=pb.BLACK)
    assert told.to_move == pb.BLACK
    # The end of the record when no move number is given.
    assert ask(stub, sgf=RECORD).move_number == 120


def test_a_text_board_works_and_the_side_to_move_is_the_point_of_view(stub: pb_grpc.CnnServeStub) -> None:
    where = position.from_sgf(RECORD, 30)
    text = where.board.to_text()
    for colour, wire in ((BLACK, pb.BLACK), (WHITE, pb.WHITE)):
        reply = ask(stub, board=text, to_move=wire, top_k=5)
        assert reply.to_move == wire and reply.move_number == 0
        assert reply.legal_moves == sum(where.board.is_legal(colour, p) for p in range(POINTS))
        assert len(reply.top_moves) == 5
    black = np.array(ask(stub, board=text, to_move=pb.BLACK).probabilities)
    white = np.array(ask(stub, board=text, to_move=pb.WHITE).probabilities)
    assert not np.array_equal(black, white)  # the planes are from the mover's side


def test_a_ko_needs_the_record_a_text_board_cannot_know_it(stub: pb_grpc.CnnServeStub) -> None:
    # The edge ko of tests/cnnserve/go/test_board.py: white B18, then black C18 takes it.
    record = "(;SZ[19]AB[ba][ab][bc]AW[ca][db][cc];W[bb];B[cb])"
    ko = 1 * 19 + 1  # B18
    reply = ask(stub, sgf=record)
    assert reply.to_move == pb.WHITE
    assert reply.probabilities[ko] == 0  # white may not retake at once
    assert ask(stub, sgf=record, to_move=pb.BLACK).probabilities[ko] > 0  # black may fill it
    # The same stones as a text board: no history, so no ko, and white may take.
    assert ask(stub, board=reply.board, to_move=pb.WHITE).probabilities[ko] > 0


def test_concurrent_policy_and_v2_calls_share_runs(server: Served, stub: pb_grpc.CnnServeStub) -> None:
    """Policy requests join the model's batcher with KServe V2 requests of the same planes."""
    where = position.from_sgf(RECORD, 50)
    planes = features.planes(where.board, where.to_move)[None]

    async def fire() -> list[pb.PolicyResponse]:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            aio_stub = pb_grpc.CnnServeStub(channel)
            requests = [pb.PolicyRequest(model_name="alphago_policy", sgf=RECORD, move_number=50) for _ in range(24)]
            return list(await asyncio.gather(*(aio_stub.Policy(r) for r in requests)))

    before = scrape(server.metrics_address)
    triton = tc.InferenceServerClient(server.grpc_address)
    tensor = tc.InferInput("planes", list(planes.shape), "FP32")
    tensor.set_data_from_numpy(planes)
    v2 = triton.infer("alphago_policy", [tensor]).as_numpy("probabilities")[0]
    replies = asyncio.run(fire())
    after = scrape(server.metrics_address)
    legal = np.array([where.board.is_legal(where.to_move, p) for p in range(POINTS)])
    for reply in replies:
        np.testing.assert_allclose(reply.probabilities, legal_probabilities(v2, legal), rtol=1e-4, atol=1e-7)
    items, batches = batched(before, after, "alphago_policy")
    assert items == 25
    assert batches < 25, "no two concurrent Policy calls shared an ONNX Runtime run"
    answered = [v for lab, v in after["cnnserve_requests_total"]
                if lab == {"model": "alphago_policy", "rpc": "Policy", "code": "OK"}]  # fmt: skip
    assert answered and answered[0] >= 24


# -- bad input -------------------------------------------------------------------------------------


def text(*lines: str) -> dict[str, object]:
    """A text-board request whose first lines are ``lines`` (padded with empty points, the rest of
    the 19 lines empty), black to move."""
    rows = [line.ljust(19, ".") for line in lines] + ["." * 19] * (19 - len(lines))
    return {"board": "\n".join(rows), "to_move": pb.BLACK}


def bad_requests() -> dict[str, tuple[dict, grpc.StatusCode, str]]:
    bad = grpc.StatusCode.INVALID_ARGUMENT
    empty = text()
    return {
        "no position": ({}, bad, "position: missing; send board (19 text lines) or sgf"),
        "sgf that does not parse": ({"sgf": "(;SZ[19];B[dd"}, bad, "sgf: the value opened at line 1, column 11"),
        "not sgf at all": ({"sgf": "hello"}, bad, "sgf: no game tree"),
        "13x13": ({"sgf": "(;SZ[13];B[dd])"}, bad, "sgf: board size SZ[13]; only 19x19 boards are supported"),
        "move beyond the record": ({"sgf": RECORD, "move_number": 121}, bad,
                                   "move_number: 121, but the record has 120 moves; expected 0 to 120"),
        "illegal move in the record": ({"sgf": "(;SZ[19];B[dd];W[dd])"}, bad,
                                       "sgf: move 2 (W[dd]): white D16 is illegal: the point is occupied"),
        "18 lines": ({**empty, "board": "\n".join(["." * 19] * 18)}, bad, "board: 18 lines; expected 19 lines"),
        "long line": (text("." * 19, "." * 19, "." * 19, "." * 20), bad,
                      "board: line 4 has 20 points; expected 19 lines of 19 points each"),
        "strange character": (text("..#"), bad, "board: line 1, point 3 is '#'; expected '.', 'X' or 'O'"),
        "stones without liberties": (text("XO", "O"), bad,
                                     "board: the black stone at A19 has no liberties"),
        "setup without liberties": ({"sgf": "(;SZ[19]AB[aa]AW[ba][ab])"}, bad,
                                    "sgf: after the setup of node 0: the black stone at A19 has no liberties"),
        "board without side": ({"board": EMPTY_BOARD}, bad, "to_move: required with a text board"),
        "unknown side": ({**empty, "to_move": 7}, bad, "to_move: 7 is not a colour; expected BLACK (1) or WHITE (2)"),
        "move number with board": ({**empty, "move_number": 3}, bad, "move_number: only with sgf"),
        "top_k too large": ({**empty, "top_k": 362}, bad, "top_k: 362; expected 0 to 361"),
        "not a policy model": ({**empty, "model_name": "lenet5"}, bad,
                               "model_name: model 'lenet5' is a classification model taking FP32 [1, 32, 32], "
                               "not a Go policy network"),
        "unknown model": ({**empty, "model_name": "leela"}, grpc.StatusCode.NOT_FOUND,
                          "model_name: unknown model 'leela'"),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(bad_requests()))
def test_bad_requests_get_a_status_naming_the_field(case: str, stub: pb_grpc.CnnServeStub) -> None:
    fields, code, message = bad_requests()[case]
    request = pb.PolicyRequest(**{"model_name": "alphago_policy", **fields})
    with pytest.raises(grpc.RpcError) as raised:
        stub.Policy(request, timeout=60)
    assert raised.value.code() == code
    assert message in raised.value.details()
    # The server goes on answering.
    assert len(ask(stub, board=EMPTY_BOARD, to_move=pb.BLACK, top_k=4).top_moves) == 4


@pytest.mark.parametrize("case", [c for c in bad_requests() if c != "unknown side"])  # 7: no HTTP spelling
def test_the_same_bad_requests_over_http_get_grpcs_message(
    case: str, server: Served, stub: pb_grpc.CnnServeStub
) -> None:
    fields, code, _ = bad_requests()[case]
    with pytest.raises(grpc.RpcError) as over_grpc:
        stub.Policy(pb.PolicyRequest(**{"model_name": "alphago_policy", **fields}), timeout=60)
    sgf = "sgf" in fields
    body = str(fields.get("sgf", fields.get("board", ""))).encode()
    query = {name: fields[name] for name in ("move_number", "top_k") if name in fields}
    if "to_move" in fields:
        query["to_move"] = {pb.BLACK: "black", pb.WHITE: "white"}[fields["to_move"]]
    path = f"/v1/models/{fields.get('model_name', 'alphago_policy')}/policy?{urlencode(query)}"
    headers = {"Content-Type": "application/x-go-sgf" if sgf else "text/plain"}
    status, reply = http_call(server, "POST", path, body, headers)
    assert (status, json.loads(reply)) == (HTTP_STATUS[code.name], {"error": over_grpc.value.details()})


def test_bad_positions_do_not_fail_concurrent_requests(server: Served) -> None:
    async def fire() -> list[object]:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            aio_stub = pb_grpc.CnnServeStub(channel)
            requests = [
                pb.PolicyRequest(model_name="alphago_policy", sgf=RECORD if i % 4 else "(;B[", top_k=1)
                for i in range(16)
            ]
            return list(await asyncio.gather(*(aio_stub.Policy(r) for r in requests), return_exceptions=True))

    for i, outcome in enumerate(asyncio.run(fire())):
        if i % 4:
            assert isinstance(outcome, pb.PolicyResponse) and len(outcome.top_moves) == 1, outcome
        else:
            assert isinstance(outcome, grpc.aio.AioRpcError) and outcome.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_sigterm_while_positions_are_read_loses_no_accepted_call(small_repo: Path) -> None:
    """Calls still reading their positions when SIGTERM arrives are computed and answered."""
    proc = start_server(small_repo, "--model", "alphago_policy", "--decode-threads", "1")
    proc.wait_ready()

    async def load_then_terminate() -> list[pb.PolicyResponse]:
        async with grpc.aio.insecure_channel(proc.grpc_address) as channel:
            aio_stub = pb_grpc.CnnServeStub(channel)
            request = pb.PolicyRequest(model_name="alphago_policy", sgf=RECORD, top_k=3)
            calls = [asyncio.ensure_future(aio_stub.Policy(request)) for _ in range(32)]
            while accepted(proc) < len(calls):  # each call in flight or answered
                await asyncio.sleep(0.005)
            proc.process.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*calls))

    replies = asyncio.run(load_then_terminate())
    assert proc.terminate() == 0, proc.output
    assert [len(r.top_moves) for r in replies] == [3] * 32
    assert len({tuple(r.probabilities) for r in replies}) == 1
    assert "shutting down" in proc.output and "stopped" in proc.output


def accepted(proc: ServerProcess) -> float:
    names = ("cnnserve_inflight_requests", "cnnserve_requests_total")
    return model_total(scrape(proc.metrics_address), "alphago_policy", *names)
