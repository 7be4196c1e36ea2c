"""One lone caller, stage by stage: where a single request's time goes, one run.

    python -m bench.lone_request [--model lenet5] [--seconds 10]

One caller in a closed loop against a bare grpc.aio echo of the same bytes (``bench.echo``),
then against the server; the server's own histograms (read from /metrics before and after)
split its share. Means, so that the stages add up:

    round trip        what the caller waits, per request
    outside handler   round trip minus the handler: gRPC, the wire and the client (the echo's
                      whole round trip is the floor for this)
    handler           arrival to reply inside the server (cnnserve_request_duration_seconds)
    queue             in the batcher until its batch starts (cnnserve_queue_duration_seconds)
    copy              inputs into the session's buffers, worker thread (..._copy_duration_...;
                      0 when none is copied: a one-item batch on the CPU runs from its arrays)
    compute           ONNX Runtime's run, worker thread (cnnserve_compute_duration_seconds)
    rest of handler   handler minus queue, copy and compute: decoding, checks, futures, the hop
                      back from the worker thread, encoding (on the event loop)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.common import ROOT, closed_loop, ensure_exported, infer_request, progress, serving_with_metrics
from bench.vs_echo import running_echo
from cnnserve.client.scrape import Samples, scrape, total
from cnnserve.repository import load_entry

HISTOGRAMS = {
    "handler": ("cnnserve_request_duration_seconds", {"rpc": "ModelInfer"}),
    "queue": ("cnnserve_queue_duration_seconds", {}),
    "copy": ("cnnserve_copy_duration_seconds", {}),
    "compute": ("cnnserve_compute_duration_seconds", {}),
}


def mean_ms(before: Samples, after: Samples, name: str, **labels: str) -> float:
    count = total(after, f"{name}_count", **labels) - total(before, f"{name}_count", **labels)
    seconds = total(after, f"{name}_sum", **labels) - total(before, f"{name}_sum", **labels)
    return seconds / count * 1e3 if count else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("server_args", nargs="*", help="extra `cnnserve serve` flags, after --")
    args = parser.parse_args()
    ensure_exported(args.repo, args.model)
    spec = load_entry(args.repo / args.model).inputs[0]
    x = np.random.default_rng(0).random((1, *spec.shape), dtype=np.float32)
    request = infer_request(args.model, spec.name, x)

    progress("echo server, one caller")
    with running_echo(reply_floats=10) as address:
        echo = closed_loop(address, request, concurrency=1, seconds=args.seconds)
    progress(f"cnnserve, {args.model}, one caller")
    with serving_with_metrics(args.repo, "--model", args.model, *args.server_args) as (address, metrics):
        closed_loop(address, request, concurrency=1, seconds=1.0)  # warm the path; not counted
        before = scrape(metrics)
        served = closed_loop(address, request, concurrency=1, seconds=args.seconds, warmup=0.0)
        after = scrape(metrics)

    stages = {stage: mean_ms(before, after, name, model=args.model, **labels)
              for stage, (name, labels) in HISTOGRAMS.items()}  # fmt: skip
    if stages["copy"] != stages["copy"]:  # no batch was copied (a lone request on the CPU runs from its arrays)
        stages["copy"] = 0.0
    round_trip = float(np.mean(served.latencies)) * 1e3
    rows = [
        ("round trip", round_trip, float(np.mean(echo.latencies)) * 1e3),
        ("  outside handler", round_trip - stages["handler"], float("nan")),
        ("  handler", stages["handler"], float("nan")),
        ("    queue", stages["queue"], float("nan")),
        ("    copy", stages["copy"], float("nan")),
        ("    compute", stages["compute"], float("nan")),
        ("    rest of handler", stages["handler"] - stages["queue"] - stages["copy"] - stages["compute"], float("nan")),
    ]
    print(f"{args.model}, one caller, {served.ok:,} requests; means in ms")
    print(f"{'stage':<22}{'cnnserve':>10}{'echo':>10}")
    for label, ms, echo_ms in rows:
        print(f"{label:<22}{ms:>10.3f}" + (f"{echo_ms:>10.3f}" if echo_ms == echo_ms else ""))
    print(f"p50 round trip: cnnserve {served.percentile(50) * 1e3:.3f} ms, echo {echo.percentile(50) * 1e3:.3f} ms, "
          f"difference {(served.percentile(50) - echo.percentile(50)) * 1e3:+.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
