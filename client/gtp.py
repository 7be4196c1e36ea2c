"""``cnnserve gtp --server HOST:PORT --model alphago_policy``: a GTP engine on stdin/stdout whose
moves and analysis come from the server's policy network.

For each position the engine needs (a genmove, an analysis), it sends the server's Policy RPC an
SGF record that reaches as far back as the feature planes see: the board of 8 moves ago as setup,
then the last 8 moves (so turns since each move and the ko reach the server, and the request does
not grow with the game), and gets the 361 probabilities back. The engine
(:mod:`cnnserve.client.gtp_engine`) plays the most probable legal move that does not fill its own eye, and
answers Leela Zero's and KataGo's analysis commands (``lz-analyze``, ``kata-analyze``,
``lz-genmove_analyze``, ``kata-genmove_analyze``) with the policy, for Sabaki and Lizzie.
"""

from __future__ import annotations

import argparse
import sys

import grpc

from cnnserve.client.channel import add_security_arguments, channel, configure, rpc_error
from cnnserve.client.gtp_engine import VERSION, Engine
from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go.board import BLACK, Board
from cnnserve.go.coords import SIZE


class ServerPolicy:
    """The engine's policy: one Policy RPC per position, the record as the engine wrote it."""

    def __init__(self, stub: pb_grpc.CnnServeStub, server: str, model: str, timeout: float) -> None:
        self.stub = stub
        self.server = server
        self.model = model
        self.timeout = timeout

    def __call__(self, board: Board, color: int, record: str) -> list[float]:
        request = pb.PolicyRequest(model_name=self.model, sgf=record, to_move=pb.BLACK if color == BLACK else pb.WHITE)
        try:
            reply = self.stub.Policy(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.server) from None
        return list(reply.probabilities)


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
        policy = ServerPolicy(stub, args.server, args.model, args.timeout)
        engine = Engine(policy, komi=args.komi, version=args.override_version or VERSION)
        engine.serve(sys.stdin, sys.stdout)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="alphago_policy", help="a Go policy model (default: %(default)s)")
    parser.add_argument("--server", default="localhost:8001", help="the server's gRPC address (default: %(default)s)")
    add_security_arguments(parser)
    parser.add_argument("--komi", type=float, default=7.5, help="komi until the controller sets one (default: 7.5)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per policy call (default: 30)")
    parser.add_argument(
        "--override-version",
        metavar="VERSION",
        help="the reply to GTP's version command (default: cnnserve's version). Lizzie reads the reply of an "
        "engine not named KataGo as a Leela Zero version and warns below 0.15: --override-version 0.17 quiets it "
        "(KataGo has the same option for the same reason)",
    )
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="start without asking the server first (by default an unreachable server or a model that is no Go "
        "policy ends the engine at once with an error)",
    )
