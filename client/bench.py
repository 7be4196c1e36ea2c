"""``cnnserve bench``: load one model of a running server and report throughput, latency
percentiles and where the server spent the time (queue against compute, read from its metrics
endpoint before and after).

    cnnserve bench --model resnet50 --concurrency 8 --duration 30
    cnnserve bench --model lenet5 --rate 200 --requests 2000          # open loop, Poisson arrivals
    cnnserve bench --model resnet50 --rpc classify --image photo.jpg
    cnnserve bench --model alphago_policy --rpc policy --concurrency 32 [--sgf game.sgf --move 150]
    cnnserve bench --model lenet5 --concurrency 32 --trace    # the slowest requests' stages (client/traces.py)

The pieces here (targets, the preflight request, the server-side split) are shared with
``cnnserve compare``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import grpc
import numpy as np
from PIL import Image

from cnnserve.client import traces
from cnnserve.client.channel import ClientError, add_security_arguments, channel, configure, rpc_error
from cnnserve.client.loadgen import Call, LoadReport, run_load
from cnnserve.client.scrape import Samples, metrics_address, scrape, total
from cnnserve.datatypes import DATATYPES
from cnnserve.generated.cnnserve.v1 import service_pb2 as v1_pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as v1_pb_grpc
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc
from cnnserve.tables import render_table

RPCS = ("v2", "classify", "policy")
_RPC_NAMES = {"v2": "V2 ModelInfer", "classify": "Classify", "policy": "Policy"}
_ITEM_NAMES = {"v2": "item", "classify": "image", "policy": "position"}
Request = pb.ModelInferRequest | v1_pb.ClassifyRequest | v1_pb.PolicyRequest


@dataclass(frozen=True)
class Target:
    """What one request of the load is: a V2 ModelInfer or a Classify of ``items`` items, or a
    Policy of one position."""

    model: str
    rpc: str
    items: int
    request: Request

    def method(self, ch: grpc.Channel | grpc.aio.Channel) -> Callable[..., object]:
        if self.rpc == "classify":
            return v1_pb_grpc.CnnServeStub(ch).Classify
        if self.rpc == "policy":
            return v1_pb_grpc.CnnServeStub(ch).Policy
        return pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer

    def make_call(self, ch: grpc.aio.Channel) -> Call:
        call = self.method(ch)
        return lambda: call(self.request)  # type: ignore[return-value]

    @property
    def describe(self) -> str:
        what = _ITEM_NAMES[self.rpc] + ("s" if self.items > 1 else "")
        return f"{self.model}, {_RPC_NAMES[self.rpc]}, {self.items} {what}/request"


def synthetic_photo(width: int = 500, height: int = 375) -> bytes:
    """A JPEG that compresses like a photo (ImageNet's typical 500x375): smooth shapes and noise."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    pixels = np.clip(smooth + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def v2_target(server: str, model: str, items: int, seed: int = 0) -> Target:
    """Random inputs of the shapes and datatypes the model's metadata gives."""
    with channel(server) as ch:
        try:
            meta = pb_grpc.GRPCInferenceServiceStub(ch).ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=30)
        except grpc.RpcError as exc:
            raise rpc_error(exc, server) from None
    rng = np.random.default_rng(seed)
    request = pb.ModelInferRequest(model_name=model)
    for tensor in meta.inputs:
        shape = [items, *tensor.shape[1:]]
        dtype = DATATYPES[tensor.datatype].dtype
        if dtype.kind == "f":
            data = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            data = rng.integers(0, 128, shape).astype(dtype)
        else:
            raise ClientError(f"model {model!r}: input {tensor.name!r} is {tensor.datatype}; bench sends numbers only")
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
        request.raw_input_contents.append(data.astype(dtype.newbyteorder("<")).tobytes())
    return Target(model, "v2", items, request)


def classify_target(model: str, items: int, image: bytes | None = None) -> Target:
    images = [image if image is not None else synthetic_photo()] * items
    return Target(model, "classify", items, v1_pb.ClassifyRequest(model_name=model, images=images, top_k=1))


def sample_record(moves: int = 150, seed: int = 0) -> str:
    """An SGF record of a game of ``moves`` random legal moves that fill no eye: a stand-in for a
    mid-game position when no record is given (the planes cost what a real position's do)."""
    import random

    from cnnserve.go import sgf
    from cnnserve.go.board import BLACK, Board, opponent

    rng = random.Random(seed)
    board, color = Board(), BLACK
    while len(board.moves) < moves:
        choices = [p for p in board.legal_points(color) if not board.is_eye(color, p)]
        board.play(color, rng.choice(choices) if choices else None)
        color = opponent(color)
    return sgf.write(board.moves, komi=7.5)


def policy_target(model: str, record: str | None = None, move: int | None = None) -> Target:
    request = v1_pb.PolicyRequest(model_name=model, sgf=record or sample_record(), top_k=1)
    if move is not None:
        request.move_number = move
    return Target(model, "policy", 1, request)


def preflight(server: str, target: Target) -> None:
    """One request before the load, so that a wrong model, a batch over its maximum or a server
    that is down stops the command at once with the server's own message."""
    with channel(server) as ch:
        try:
            target.method(ch)(target.request, timeout=120)
        except grpc.RpcError as exc:
            raise rpc_error(exc, server) from None


def server_split(before: Samples, after: Samples, model: str) -> dict[str, float]:
    """What the server measured between two scrapes: mean queue time per request, mean compute
    time per ONNX Runtime run and mean batch size."""

    def delta(name: str) -> float:
        return total(after, name, model=model) - total(before, name, model=model)

    def mean(name: str) -> float:
        count = delta(f"{name}_count")
        return delta(f"{name}_sum") / count if count else float("nan")

    return {
        "queue_ms": mean("cnnserve_queue_duration_seconds") * 1e3,
        "compute_ms": mean("cnnserve_compute_duration_seconds") * 1e3,
        "batch_size": mean("cnnserve_batch_size"),
        "runs": delta("cnnserve_batch_size_count"),
    }


class ProgressBar:
    """``[#####.....] 120/500 requests  57.1 req/s`` on stderr, redrawn at most five times a second."""

    def __init__(self, requests: int | None, duration: float | None, stream: TextIO | None = None) -> None:
        # sys.stderr when drawn, not when defined: a redirected stderr gets the bar.
        self.requests, self.duration, self.stream = requests, duration, stream or sys.stderr
        self.last = 0.0
        self.drawn = False
        self.state: tuple[int, int, float] | None = None

    def __call__(self, ok: int, failed: int, elapsed: float, *, force: bool = False) -> None:
        self.state = (ok, failed, elapsed)
        now = time.monotonic()
        if now - self.last < 0.2 and not force:
            return
        self.last = now
        done = ok + failed
        if self.requests:
            fraction, count = done / self.requests, f"{done}/{self.requests} requests"
        else:
            fraction, count = elapsed / (self.duration or 1.0), f"{elapsed:.0f}/{self.duration:.0f} s, {done} requests"
        bar = "#" * int(30 * min(fraction, 1.0))
        errors = f", {failed} failed" if failed else ""
        rate = done / elapsed if elapsed > 0 else 0.0
        self.stream.write(f"\r[{bar:<30}] {count}  {rate:,.1f} req/s{errors}   ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.state is not None:
            self(*self.state, force=True)  # the final count, which the throttle may have skipped
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def measure(server: str, target: Target, *, concurrency: int = 1, requests: int | None = None,
            duration: float | None = None, rate: float | None = None, warmup: float = 0.0,
            progress: bool = True, on_start: Callable[[], object] | None = None,
            connections: int = 1, make_call: Any = None) -> LoadReport:  # fmt: skip
    bar = ProgressBar(requests, duration) if progress else None
    try:
        return run_load(server, make_call or target.make_call, items_per_request=target.items, concurrency=concurrency,
                        requests=requests, duration=duration, rate=rate, warmup=warmup, progress=bar,
                        on_start=on_start, connections=connections)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def print_report(target: Target, report: LoadReport, mode: str, split: dict[str, float] | None) -> None:
    print(f"{target.describe}, {mode}: {report.ok + report.failed} requests in {report.seconds:.1f} s"
          + (" (interrupted)" if report.interrupted else ""))  # fmt: skip
    rows = [
        ["throughput", f"{report.requests_per_second:,.1f} req/s", f"{report.items_per_second:,.1f} items/s"],
        ["latency ms", " ".join(f"p{p} {_ms(report.percentile(p) * 1e3)}" for p in (50, 90, 99)),
         f"max {_ms(max(report.latencies, default=float('nan')) * 1e3)}"],
    ]  # fmt: skip
    if split is not None:
        rows.append(["server", f"queue {_ms(split['queue_ms'])} ms/request",
                     f"compute {_ms(split['compute_ms'])} ms/run, mean batch {split['batch_size']:.1f}"])  # fmt: skip
    else:
        rows.append(["server", "metrics not read", "(--metrics HOST:PORT)"])
    errors = ", ".join(f"{code} x{n}: {report.error_messages[code]}" for code, n in report.errors.items())
    rows.append(["errors", errors or "none", ""])
    print(render_table(["", "", ""], rows).split("\n", 2)[2])


def main(args: argparse.Namespace) -> int:
    configure(args)  # --tls-*, --header: for every channel this command opens
    if args.items < 1 or args.concurrency < 1 or args.connections < 1:
        raise ClientError("--items, --concurrency and --connections must be 1 or more")
    if args.requests is None and args.duration is None:
        args.requests = 200
    if args.rpc != "policy" and (args.sgf or args.move is not None):
        raise ClientError("--sgf and --move go with --rpc policy")
    if args.rpc == "policy":
        if args.items != 1:
            raise ClientError("--rpc policy sends one position per request: leave --items at 1")
        target = policy_target(args.model, _read(args.sgf, "r") if args.sgf else None, args.move)
    elif args.rpc == "classify":
        target = classify_target(args.model, args.items, _read(args.image, "rb") if args.image else None)
    else:
        target = v2_target(args.server, args.model, args.items)
    preflight(args.server, target)
    metrics = metrics_address(args.server, args.metrics)
    scraped: list[Samples | None] = []  # at the start of measuring, and at the end
    receiver = traces.Receiver(args.trace_listen) if args.trace else None
    sent: list[tuple[float, float, str]] = []  # with --trace: (started, latency, trace id) per request
    began: list[float] = []

    def started() -> None:
        began.append(time.perf_counter())
        scraped.append(_try_scrape(metrics))

    try:
        calls = traces.traced_calls(target, sent) if receiver else None
        report = measure(args.server, target, concurrency=args.concurrency, requests=args.requests,
                         duration=args.duration, rate=args.rate, warmup=args.warmup, connections=args.connections,
                         on_start=started, make_call=calls)  # fmt: skip
        slowest = _slowest(receiver, sent, began, args) if receiver is not None else None
    finally:
        if receiver is not None:
            receiver.close()
    before = scraped[0] if scraped else None
    after = _try_scrape(metrics) if before is not None else None
    split = server_split(before, after, args.model) if before is not None and after is not None else None
    mode = f"open loop at {args.rate:g} req/s" if args.rate else f"closed loop, {args.concurrency} callers"
    if args.json:
        extra = {} if slowest is None else {"slowest": slowest}
        print(json.dumps({"model": args.model, "rpc": args.rpc, "items_per_request": args.items, "mode": mode,
                          **report.summary(), "server": split, **extra}, indent=2))  # fmt: skip
    else:
        print_report(target, report, mode, split)
        if slowest is not None:
            print_slowest(slowest)
    return 130 if report.interrupted else 0


def _slowest(receiver: traces.Receiver, sent: list[tuple[float, float, str]], began: list[float],
             args: argparse.Namespace) -> list[dict[str, Any]]:  # fmt: skip
    """The slowest measured requests, each with its stages from the server's spans."""
    measured = [(latency, trace_id) for start, latency, trace_id in sent if began and start >= began[0]]
    slowest = sorted(measured, reverse=True)[: args.trace_slowest]
    receiver.wait([trace_id for _, trace_id in slowest], args.trace_wait)
    rows = []
    for latency, trace_id in slowest:
        stages = traces.breakdown(receiver.spans.get(trace_id, []))
        row: dict[str, Any] = {"trace_id": trace_id, "client_ms": latency * 1e3}
        if stages is not None:
            row.update(stages, outside_ms=latency * 1e3 - stages["server_ms"])
        rows.append(row)
    if slowest and all(len(row) == 2 for row in rows):
        url = f"http://THIS-HOST:{receiver.port}/v1/traces"
        print(f"note: no spans of these requests reached {args.trace_listen} within {args.trace_wait:g} s; start "
              f"the server with --trace-config level=TIMESTAMPS --trace-config mode=opentelemetry "
              f"--trace-config opentelemetry,url={url}", file=sys.stderr)  # fmt: skip
    return rows


def print_slowest(rows: list[dict[str, Any]]) -> None:
    """Where the slowest requests' time went: a line each, in ms."""
    print(f"\nthe {len(rows)} slowest requests, from the server's spans (ms):")
    header = ["trace id", "client", "outside", "server", "read+decode", "queue", "compute", "batch", "reply", "worker"]
    table = []
    for r in rows:
        if "server_ms" not in r:
            table.append([r["trace_id"], _ms(r["client_ms"]), "no spans"] + [""] * 7)
            continue
        times = [_ms(r[k]) for k in ("client_ms", "outside_ms", "server_ms", "read_ms", "queue_ms", "compute_ms")]
        table.append([r["trace_id"], *times, str(r["batch_size"]), _ms(r["reply_ms"]), str(r["worker_pid"])])
    print(render_table(header, table))


def _read(path: str, mode: str) -> Any:
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None


def _try_scrape(address: str) -> Samples | None:
    try:
        return scrape(address)
    except ClientError as exc:
        print(f"note: {exc}", file=sys.stderr)
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the model to load")
    parser.add_argument(
        "--rpc",
        choices=RPCS,
        default="v2",
        help="V2 ModelInfer (random tensors), Classify (JPEG) or Policy (a Go position)",
    )
    parser.add_argument("--server", default="localhost:8001", help="gRPC address (default: %(default)s)")
    add_security_arguments(parser)
    parser.add_argument("--metrics", help="metrics address (default: the server's host, port 8002)")
    parser.add_argument("--concurrency", type=int, default=1, help="closed loop: callers (default: 1)")
    parser.add_argument("--connections", type=int, default=1,
                        help="TCP connections the load is spread over; against a server of several workers, at least "
                             "as many as it has workers (connections, not calls, are spread) (default: 1)")  # fmt: skip
    parser.add_argument("--rate", type=float, help="open loop: requests per second, Poisson arrivals")
    parser.add_argument("--requests", type=int, help="stop after this many requests (default: 200)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--items", type=int, default=1, help="items (images) per request (default: 1)")
    parser.add_argument("--image", help="with --rpc classify: the image to send (default: a synthetic JPEG)")
    parser.add_argument("--sgf", help="with --rpc policy: the record to send (default: 150 random legal moves)")
    parser.add_argument("--move", type=int, help="with --rpc policy and --sgf: the move number (default: the end)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load not measured (default: 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--trace", action="store_true",
                        help="send a W3C traceparent with every request, take the server's spans over OTLP/HTTP on "
                             "--trace-listen and show where the slowest requests' time went")  # fmt: skip
    parser.add_argument("--trace-listen", default="127.0.0.1:4318", metavar="HOST:PORT",
                        help="with --trace: where the server's spans are received (default: %(default)s, "
                             "OTLP/HTTP's port; the server's --trace-config "
                             "opentelemetry,url=http://HOST:PORT/v1/traces)")  # fmt: skip
    parser.add_argument(
        "--trace-slowest",
        type=int,
        default=5,
        metavar="N",
        help="with --trace: how many of the slowest requests to show (default: %(default)s)",
    )
    parser.add_argument("--trace-wait", type=float, default=15.0, metavar="SECONDS",
                        help="with --trace: how long to wait for their spans after the load, as a server sends "
                             "them in batches (default: %(default)s)")  # fmt: skip
