"""Policy calls against raw ONNX Runtime on the same planes, same model, same machine, one run.

    python bench/vs_policy.py [--model alphago_policy] [--concurrency 32] [--seconds 20]

One mid-game position (``--sgf FILE --move N``, or 150 random legal moves) is measured four ways:

1. its 48 planes computed in this process (SGF replay + features), positions per second;
2. raw ONNX Runtime on those planes at several batch sizes, the best as the reference;
3. the server's V2 ModelInfer with the planes on the wire, ``--concurrency`` callers;
4. the server's Policy with the SGF record on the wire, ``--concurrency`` callers: the server
   reads the position, computes the planes, batches, and masks the illegal points.

The ratios 3/2 and 4/2 are printed; 4 against 3 is what computing the planes on the server costs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, closed_loop, ensure_exported, infer_request, progress, running_server
from bench.vs_raw import raw_session, raw_throughput_of
from cnnserve.client.bench import sample_record
from cnnserve.generated.cnnserve.v1 import service_pb2 as v1_pb
from cnnserve.go import features, position
from cnnserve.repository import load_entry


def features_rate(record: str, move: int | None, seconds: float) -> float:
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        where = position.from_sgf(record, move)
        features.planes(where.board, where.to_move)
        done += 1
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alphago_policy")
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--connections", type=int, default=1,
                        help="TCP connections (with `-- --workers N`, at least N: connections are spread)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--sgf", type=Path, help="a record (default: 150 random legal moves)")
    parser.add_argument("--move", type=int, help="with --sgf: the move number (default: the end)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="for both raw and server")
    parser.add_argument("server_args", nargs="*", help="extra `cnnserve serve` flags, after --")
    args = parser.parse_args()
    ensure_exported(args.repo, args.model)
    record = args.sgf.read_text() if args.sgf else sample_record()
    where = position.from_sgf(record, args.move)
    planes = features.planes(where.board, where.to_move)
    config = load_entry(args.repo / args.model)
    input_name = config.inputs[0].name

    progress(f"planes in process: {position.describe(where)}")
    rate = features_rate(record, args.move, args.seconds / 4)
    progress(f"  {rate:,.1f} positions/s ({1e3 / rate:.2f} ms each)")

    progress(f"raw ONNX Runtime, {args.model}, batch sizes {args.batches}")
    session = raw_session(config.onnx_path, args.device)
    raw = {}
    for batch in (int(b) for b in args.batches.split(",")):
        raw[batch] = raw_throughput_of(session, input_name, np.repeat(planes[None], batch, axis=0), args.seconds / 3)
        progress(f"  batch {batch}: {raw[batch]:,.1f} positions/s")
    best = max(raw, key=lambda b: raw[b])

    with running_server(args.repo, "--model", args.model, "--device", args.device, *args.server_args) as address:
        progress(f"server V2 ModelInfer, {args.concurrency} callers of one position's planes each")
        v2 = closed_loop(address, infer_request(args.model, input_name, planes[None]),
                         concurrency=args.concurrency, seconds=args.seconds, connections=args.connections)  # fmt: skip
        progress(f"server Policy, {args.concurrency} callers of one SGF record each")
        request = v1_pb.PolicyRequest(model_name=args.model, sgf=record, top_k=5)
        if args.move is not None:
            request.move_number = args.move
        policy = closed_loop(address, request, concurrency=args.concurrency, seconds=args.seconds,
                             connections=args.connections)  # fmt: skip

    print(f"model {args.model}, {session.get_providers()[0]}; {position.describe(where)}")
    print(f"planes in process (SGF replay + 48 planes): {rate:,.1f} positions/s, {1e3 / rate:.2f} ms each")
    print(f"raw ONNX Runtime, best batch {best}:       {raw[best]:,.1f} positions/s")
    for name, result in (("V2 ModelInfer (planes)", v2), ("Policy (SGF record)", policy)):
        print(f"server {name:<23} {result.requests_per_second:,.1f} req/s "
              f"(p50 {result.percentile(50) * 1e3:.1f} ms, p99 {result.percentile(99) * 1e3:.1f} ms, "
              f"{result.failed} failed)  ratio to raw: {result.requests_per_second / raw[best]:.3f}")  # fmt: skip
    print(f"Policy / V2: {policy.requests_per_second / v2.requests_per_second:.3f}")


if __name__ == "__main__":
    main()
