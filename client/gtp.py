"""``cnnserve gtp --server HOST:PORT --model alphago_policy``: a GTP engine on stdin/stdout whose
``genmove`` asks the server's policy network.

At every genmove the game so far goes to the server as an SGF record (so the feature planes see
the history: turns since each move, the ko; handicap stones as setup), and the engine plays the
most probable legal move that does not fill its own eye, or passes when there is none. (Skipping
eye-filling moves rather than passing at the first one: the network, trained or not, sometimes
ranks an eye first while good moves remain.)
"""

from __future__ import annotations

import argparse
import sys

import grpc

from client.channel import add_security_arguments, channel, configure, rpc_error
from client.gtp_engine import Engine
from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go.board import BLACK, Board
from cnnserve.go.coords import POINTS, SIZE


class PolicyChooser:
    def __init__(self, stub: pb_grpc.CnnServeStub, server: str, model: str, timeout: float) -> None:
        self.stub = stub
        self.server = server
        self.model = model
        self.timeout = timeout

    def __call__(self, board: Board, color: int, record: str) -> int | None:
        request = pb.PolicyRequest(
            model_name=self.model,
            sgf=record,
            to_move=pb.BLACK if color == BLACK else pb.WHITE,
            top_k=POINTS,
        )
        try:
            reply = self.stub.Policy(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.server) from None
        for move in reply.top_moves:
            if board.is_legal(color, move.index) and not board.is_eye(color, move.index):
                return int(move.index)
        return None


def preflight(stub: pb_grpc.CnnServeStub, server: str, model: str, timeout: float) -> None:
    """Ask for the empty board's policy once, so that a server that is down or a model that is no
    Go policy stops the engine before a controller starts a game."""
    empty = "\n".join(["." * SIZE] * SIZE)
    try:
        stub.Policy(pb.PolicyRequest(model_name=model, board=empty, to_move=pb.BLACK), timeout=timeout)
    except grpc.RpcError as exc:
        raise rpc_error(exc, server) from None


def main(args: argparse.Namespace) -> int:
    configure(args)  # --tls-*, --header: for every channel this command opens
    with channel(args.server) as ch:
        stub = pb_grpc.CnnServeStub(ch)
        if args.check:
            preflight(stub, args.server, args.model, args.timeout)
        engine = Engine(PolicyChooser(stub, args.server, args.model, args.timeout), komi=args.komi)
        engine.serve(sys.stdin, sys.stdout)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="alphago_policy", help="a Go policy model (default: %(default)s)")
    parser.add_argument("--server", default="localhost:8001", help="the server's gRPC address (default: %(default)s)")
    add_security_arguments(parser)
    parser.add_argument("--komi", type=float, default=7.5, help="komi until the controller sets one (default: 7.5)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per policy call (default: 30)")
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="start without asking the server first (by default an unreachable server or a model that is no Go "
        "policy ends the engine at once with an error)",
    )
