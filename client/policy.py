"""``cnnserve policy --sgf FILE [--move N] | --board FILE``: the command-line client of the Policy
RPC. Prints the board with the top moves marked 1, 2, 3... and their probabilities; with
``--heatmap`` the board shows every legal point's probability instead, as a digit: tenths of the
most probable move's probability (9: 90% of it or more, 0: under 10%)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import grpc

from cnnserve.client.channel import ClientError, add_security_arguments, channel, configure, rpc_error
from cnnserve.client.gtp_engine import render
from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go import position
from cnnserve.go.board import BLACK, parse_color
from cnnserve.go.coords import to_gtp
from cnnserve.tables import render_table

MARKS = "123456789"
HEATMAP_LEGEND = (
    "heatmap: each legal point shows its probability in tenths of the best move's ({best}): "
    "9 = 90% of it or more, 5 = 50-60%, 0 = under 10%; '.' = an empty point where {side} may not play"
)


def request_for(args: argparse.Namespace) -> pb.PolicyRequest:
    request = pb.PolicyRequest(model_name=args.model, top_k=args.top)
    if args.to_move:
        try:
            request.to_move = pb.BLACK if parse_color(args.to_move) == BLACK else pb.WHITE
        except ValueError as exc:
            raise ClientError(f"--to-move: {exc}") from None
    if args.sgf:
        request.sgf = _read(args.sgf)
        if args.move is not None:
            request.move_number = args.move
    else:
        request.board = _read(args.board)
    return request


def ask(server: str, request: pb.PolicyRequest, timeout: float) -> pb.PolicyResponse:
    with channel(server) as ch:
        try:
            reply: pb.PolicyResponse = pb_grpc.CnnServeStub(ch).Policy(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, server) from None
    return reply


def to_dict(reply: pb.PolicyResponse) -> dict[str, Any]:
    return {
        "model": reply.model_name,
        "version": reply.model_version,
        "trained": reply.trained,
        "to_move": pb.Color.Name(reply.to_move).lower(),
        "move_number": reply.move_number,
        "legal_moves": reply.legal_moves,
        "board": reply.board,
        "top_moves": [{"vertex": m.vertex, "probability": m.probability, "index": m.index} for m in reply.top_moves],
        "probabilities": list(reply.probabilities),
    }


def heat(probabilities: list[float]) -> dict[int, str]:
    """A digit for every point with a probability above 0 (the legal ones): its probability in
    tenths of the largest, 9 for 90% of it or more, 0 for under 10%."""
    best = max(probabilities, default=0.0)
    if best <= 0:
        return {}
    return {p: str(min(9, int(10 * v / best))) for p, v in enumerate(probabilities) if v > 0}


def print_reply(reply: pb.PolicyResponse, *, heatmap: bool = False) -> None:
    to_move = pb.Color.Name(reply.to_move).lower()
    where = position.from_text(reply.board, BLACK)  # to draw it; the side does not matter here
    if heatmap:
        marks = heat(list(reply.probabilities))
    else:
        marks = {m.index: MARKS[rank] for rank, m in enumerate(reply.top_moves[: len(MARKS)])}
    weights = "" if reply.trained else "  (random weights: the moves mean nothing)"
    print(f"{reply.model_name} version {reply.model_version}{weights}")
    print(f"{to_move} to move after {reply.move_number} moves; {reply.legal_moves} legal points")
    print(render(where.board, marks, footer=False))  # a text board has no move count to show
    if heatmap and marks:
        best = max(range(len(reply.probabilities)), key=lambda p: (reply.probabilities[p], -p))
        print(HEATMAP_LEGEND.format(best=f"{to_gtp(best)}, {reply.probabilities[best]:.5f}", side=to_move))
    if not reply.legal_moves:
        print(f"no legal move: {to_move} passes")
        return
    if not reply.top_moves:  # --top 0
        return
    if heatmap:
        rows = [[marks.get(m.index, "0"), m.vertex, f"{m.probability:.5f}"] for m in reply.top_moves]
        print(render_table(["heat", "move", "probability"], rows, align="rlr"))
        return
    rows = [[MARKS[rank] if rank < len(MARKS) else "", m.vertex, f"{m.probability:.5f}"]
            for rank, m in enumerate(reply.top_moves)]  # fmt: skip
    print(render_table(["mark", "move", "probability"], rows, align="rlr"))


def main(args: argparse.Namespace) -> int:
    configure(args)  # --tls-*, --header: for every channel this command opens
    if bool(args.sgf) == bool(args.board):
        raise ClientError("give exactly one of --sgf FILE and --board FILE")
    if args.board and args.move is not None:
        raise ClientError("--move counts the moves of an SGF record; a --board has none")
    if args.board and not args.to_move:
        raise ClientError("--board needs --to-move black or white")
    if not 0 <= args.top <= 361:
        raise ClientError(f"--top must be 0 to 361, got {args.top}")
    reply = ask(args.server, request_for(args), args.timeout)
    if args.json:
        print(json.dumps(to_dict(reply), indent=2))
    else:
        print_reply(reply, heatmap=args.heatmap)
    return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sgf", metavar="FILE", help="an SGF record of a 19x19 game")
    parser.add_argument(
        "--move", type=int, metavar="N", help="with --sgf: the position after N moves (default: the end)"
    )
    parser.add_argument("--board", metavar="FILE", help="19 lines of '.', 'X' (black), 'O' (white), top line first")
    parser.add_argument("--to-move", metavar="COLOR", help="black or white (default with --sgf: whose turn it is)")
    parser.add_argument("--model", default="alphago_policy", help="a Go policy model (default: %(default)s)")
    parser.add_argument("--top", type=int, default=5, help="moves to list (default: 5)")
    parser.add_argument("--server", default="localhost:8001", help="the server's gRPC address (default: %(default)s)")
    add_security_arguments(parser)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the call (default: 60)")
    parser.add_argument("--json", action="store_true", help="print JSON (all 361 probabilities) instead of the board")
    parser.add_argument(
        "--heatmap",
        action="store_true",
        help="draw every legal point's probability on the board as a digit: tenths of the most probable move's "
        "(9: 90%% of it or more, 5: 50-60%%, 0: under 10%%); '.' is an empty point where the move is illegal, X and O "
        "are stones (the text output; --json already has all 361 probabilities)",
    )
