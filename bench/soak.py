"""Soak: an open loop at 70% of the measured capacity for half an hour; the server must answer
every request and its resident memory must not creep. A benchmark command, never a CI test.

    python -m bench.soak [--model resnet50] [--minutes 30] [--load 0.7] [--csv samples.csv]

Capacity first (closed loop, as bench.overload measures it), then Poisson arrivals at ``--load``
times that, with the server's default queue. VmRSS of the server is sampled every
``--rss-every`` seconds; its growth is counted from the end of the first minute (after the
warm-up: arenas and caches fill) to the end. A progress line each minute (requests, errors,
that minute's p99, RSS); at the end a table per minute and a verdict per criterion: zero errors,
RSS growth under 5%. ``--csv`` writes the RSS samples and the per-minute rows for a chart
(bench/ draws none: matplotlib belongs to client/compare only).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from bench.common import ROOT, ensure_exported, progress, resident_bytes, serving_process
from bench.overload import MIB, Outcomes, RssSampler, Ticker, measure_capacity, verdict
from cnnserve.client.bench import v2_target
from cnnserve.client.loadgen import run_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--load", type=float, default=0.7, help="the offered rate, as a fraction of capacity")
    parser.add_argument("--callers", type=int, default=32, help="closed-loop callers measuring capacity")
    parser.add_argument("--capacity-seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=8, help="the open loop's TCP connections")
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--growth", type=float, default=5.0, help="the RSS growth allowed, in percent")
    parser.add_argument("--csv", type=Path, help="write the samples and per-minute rows here")
    args = parser.parse_args()
    ensure_exported(args.repo, args.model)
    seconds = args.minutes * 60

    with serving_process(args.repo, "--model", args.model) as served:
        target = v2_target(served.grpc, args.model, 1)
        progress(f"capacity: {args.callers} callers, {args.capacity_seconds:g} s (after 2 s warm-up) ...")
        capacity = measure_capacity(served.grpc, target, args.callers, args.capacity_seconds).requests_per_second
        rate = args.load * capacity
        progress(f"capacity {capacity:,.1f} requests/s; soak at {rate:,.1f} requests/s for {args.minutes:g} min ...")
        outcomes = Outcomes()
        sampler = RssSampler(served.pid, args.rss_every)

        def minute_line() -> str:
            now = outcomes.ended[-1] if outcomes.ended else 0.0
            last = outcomes.latencies("OK", now - 60, now + 1)
            p99 = float(np.percentile(last, 99)) * 1e3 if len(last) else float("nan")
            return f"last minute's p99 {p99:.1f} ms, RSS {resident_bytes(served.pid) / MIB:,.1f} MiB"

        with sampler.running():
            outcomes.began = sampler.began
            report = run_load(served.grpc, outcomes.wrap(target.make_call), rate=rate, duration=seconds,
                              progress=Ticker("soak", 60.0, minute_line), connections=args.connections)  # fmt: skip
            sampler.samples.append((seconds, resident_bytes(served.pid)))  # the end, exactly

    end = sampler.samples[-1][0]
    warm = min((s for s in sampler.samples if s[0] >= 60.0), default=sampler.samples[0])
    rss_end = sampler.samples[-1][1]
    growth = (rss_end / warm[1] - 1) * 100
    rows = []
    last_ended = max(end, outcomes.ended[-1] if outcomes.ended else 0.0)  # calls still answered after the end
    for minute in range(int(np.ceil(last_ended / 60))):
        ok = outcomes.latencies("OK", minute * 60, (minute + 1) * 60)
        ended = np.frombuffer(outcomes.ended)
        sent = int(((ended >= minute * 60) & (ended < (minute + 1) * 60)).sum())
        rss = [r for t, r in sampler.samples if minute * 60 <= t <= (minute + 1) * 60]
        rows.append((minute + 1, sent, sent - len(ok), float(np.percentile(ok, 50)) * 1e3 if len(ok) else float("nan"),
                     float(np.percentile(ok, 99)) * 1e3 if len(ok) else float("nan"),
                     rss[-1] / MIB if rss else float("nan")))  # fmt: skip

    answered = report.ok + report.failed
    print(f"{args.model}, {args.load:.0%} of {capacity:,.1f} requests/s = {rate:,.1f} requests/s "
          f"for {args.minutes:g} min")  # fmt: skip
    print(f"answered {answered:,} in {report.seconds:.0f} s: {report.ok:,} OK, {report.failed:,} failed "
          f"{dict(report.errors) or ''}; p50 {report.percentile(50) * 1e3:.1f} ms, "
          f"p99 {report.percentile(99) * 1e3:.1f} ms (from scheduled send)")  # fmt: skip
    for code, message in report.error_messages.items():
        print(f"  {code}: {message}")
    print(f"{'minute':>6}{'answered':>10}{'failed':>8}{'p50 ms':>10}{'p99 ms':>10}{'RSS MiB':>10}  (latency from send)")
    for minute, sent, failed, p50, p99, rss in rows:
        print(f"{minute:>6}{sent:>10,}{failed:>8,}{p50:>10.1f}{p99:>10.1f}{rss:>10,.1f}")
    top = max(r for _, r in sampler.samples)
    print(
        f"server RSS: {sampler.samples[0][1] / MIB:,.1f} MiB at the start, {warm[1] / MIB:,.1f} MiB at "
        f"{warm[0]:.0f} s (after warm-up), {rss_end / MIB:,.1f} MiB at the end, max {top / MIB:,.1f} MiB"
    )
    print(verdict("zero errors", report.failed == 0, f"{report.failed:,} failed of {report.ok + report.failed:,}"))
    print(verdict(f"RSS growth under {args.growth:g}%", growth < args.growth,
                  f"{growth:+.1f}% from {warm[0]:.0f} s to the end ({end:.0f} s)"))  # fmt: skip
    if args.csv:
        with args.csv.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["kind", "seconds_or_minute", "rss_mib", "answered", "failed", "p50_ms", "p99_ms"])
            out.writerows(("rss", f"{t:.1f}", f"{r / MIB:.2f}", "", "", "", "") for t, r in sampler.samples)
            out.writerows(("minute", m, f"{rss:.2f}", n, fl, f"{p50:.2f}", f"{p99:.2f}")
                          for m, n, fl, p50, p99, rss in rows)  # fmt: skip
        progress(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
