"""Overload: an open loop at several times the measured capacity against a server whose queue is
bounded, for minutes. A benchmark command, never a CI test (tests/server/test_overload.py runs a
shortened one that asserts statuses only).

    python -m bench.overload [--model resnet50] [--seconds 120] [--factor 4] [--queue 16]

First the capacity: ``--callers`` closed-loop callers for ``--capacity-seconds`` (requests/s).
Then Poisson arrivals at ``--factor`` times that for ``--seconds`` against the same server,
started with ``--max-queue-size --queue``. What a bounded queue promises, each with a verdict:

* requests beyond the queue are refused at once with RESOURCE_EXHAUSTED: their p99, timed from
  when the call was sent, is small (under ``--refusal-ms``);
* accepted requests wait at most for the queue ahead of them and their own batch: p99 under
  2 x (queue + min(queue, max batch)) / capacity (the factor 2 for Poisson bursts and the client
  sharing the machine); latencies from each request's scheduled send time, so a client that
  falls behind shows up here too (see "client lag");
* no other error;
* the server's resident memory (VmRSS) is flat: the mean of the last quarter of the run within
  10% of the first quarter's.

On a machine with few cores the client competes with the server: the offered rate it reached is
printed beside the one asked for.
"""

from __future__ import annotations

import argparse
import array
import collections
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.common import ROOT, LoadReport, ensure_exported, progress, resident_bytes, serving_process
from cnnserve.client.bench import Target, v2_target
from cnnserve.client.loadgen import Call, run_load

MIB = 1024 * 1024


@dataclass
class Outcomes:
    """Every call as sent (not as scheduled): when it ended (seconds from the start), how long it
    took, and its status code's name. Appended on the load's event loop thread only."""

    began: float = field(default_factory=time.perf_counter)
    ended: array.array[float] = field(default_factory=lambda: array.array("d"))
    took: array.array[float] = field(default_factory=lambda: array.array("d"))
    codes: list[str] = field(default_factory=list)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)  # failures: code and reason

    def wrap(self, make_call: Callable[[grpc.aio.Channel], Call]) -> Callable[[grpc.aio.Channel], Call]:
        def wrapped(channel: grpc.aio.Channel) -> Call:
            call = make_call(channel)

            async def timed() -> Any:
                started = time.perf_counter()
                code = "OK"
                try:
                    return await call()
                except BaseException as exc:  # a cancelled call too: not an OK
                    code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                    details = exc.details() or "" if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                    self.kinds[f"{code}: {'queue full' if 'queue full' in details else details[:70]}"] += 1
                    raise
                finally:
                    now = time.perf_counter()
                    self.ended.append(now - self.began)
                    self.took.append(now - started)
                    self.codes.append(code)

            return timed

        return wrapped

    def latencies(self, code: str, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        ended, took = np.frombuffer(self.ended), np.frombuffer(self.took)
        codes = np.array(self.codes)
        return took[(codes == code) & (ended >= since) & (ended < until)]


class RssSampler:
    """VmRSS of ``pid`` every ``every`` seconds on a thread: (seconds since the start, bytes)."""

    def __init__(self, pid: int, every: float) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.began = time.perf_counter()

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter() - self.began, resident_bytes(self.pid)))
            if self._stop.wait(self.every):
                return

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self.began = time.perf_counter()
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def mean(self, since: float, until: float) -> float:
        values = [rss for t, rss in self.samples if since <= t <= until]
        return float(np.mean(values)) if values else float("nan")


class Ticker:
    """A ``progress`` callback for run_load that prints a line at most every ``every`` seconds."""

    def __init__(self, label: str, every: float, extra: Callable[[], str] = lambda: "") -> None:
        self.label = label
        self.every = every
        self.extra = extra
        self.next_at = every

    def __call__(self, ok: int, failed: int, seconds: float) -> None:
        if seconds >= self.next_at:
            self.next_at = seconds + self.every
            more = self.extra()
            progress(f"{self.label}: {seconds:6.0f} s, {ok:,} ok, {failed:,} failed{', ' + more if more else ''}")


def measure_capacity(address: str, target: Target, callers: int, seconds: float) -> LoadReport:
    """Requests/s of ``callers`` closed-loop callers over as many connections; every request must succeed."""
    report = run_load(address, target.make_call, concurrency=callers, duration=seconds, warmup=2.0,
                      connections=callers)  # fmt: skip
    if report.failed:
        raise RuntimeError(f"{report.failed} requests failed measuring capacity: {report.error_messages}")
    return report


def max_batch_size(repo: Path, model: str) -> int:
    import json

    return int(json.loads((repo / model / "config.json").read_text())["max_batch_size"])


def verdict(name: str, met: bool, numbers: str) -> str:
    return f"{'met' if met else 'NOT MET':>8}  {name}: {numbers}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--seconds", type=float, default=120.0, help="the overload's length")
    parser.add_argument("--factor", type=float, default=4.0, help="the offered rate, in capacities")
    parser.add_argument("--queue", type=int, default=16, help="the server's --max-queue-size")
    parser.add_argument("--callers", type=int, default=32, help="closed-loop callers measuring capacity")
    parser.add_argument("--capacity-seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=8, help="the open loop's TCP connections")
    parser.add_argument("--refusal-ms", type=float, default=50.0, help="the p99 a refusal must stay under")
    parser.add_argument("--rss-every", type=float, default=1.0, help="seconds between RSS samples")
    args = parser.parse_args()
    ensure_exported(args.repo, args.model)
    batch = max_batch_size(args.repo, args.model)

    with serving_process(args.repo, "--model", args.model, "--max-queue-size", str(args.queue)) as served:
        target = v2_target(served.grpc, args.model, 1)
        progress(f"capacity: {args.callers} callers, {args.capacity_seconds:g} s (after 2 s warm-up) ...")
        measured = measure_capacity(served.grpc, target, args.callers, args.capacity_seconds)
        capacity = measured.requests_per_second
        rate = args.factor * capacity
        progress(f"capacity {capacity:,.0f} requests/s; overload at {rate:,.0f} requests/s for {args.seconds:g} s ...")

        outcomes = Outcomes()
        sampler = RssSampler(served.pid, args.rss_every)
        ticker = Ticker("overload", 10.0, lambda: f"RSS {resident_bytes(served.pid) / MIB:,.0f} MiB")
        rss_before = resident_bytes(served.pid)
        with sampler.running():
            outcomes.began = sampler.began
            report = run_load(served.grpc, outcomes.wrap(target.make_call), rate=rate, duration=args.seconds,
                              progress=ticker, connections=args.connections)  # fmt: skip
        rss_after = resident_bytes(served.pid)

    span = report.seconds
    answered = report.ok + report.failed
    refused = report.errors.get("RESOURCE_EXHAUSTED", 0)
    others = {code: n for code, n in report.errors.items() if code != "RESOURCE_EXHAUSTED"}
    refusals = outcomes.latencies("RESOURCE_EXHAUSTED")
    accepted_sent = outcomes.latencies("OK")
    refusal_p99 = float(np.percentile(refusals, 99)) * 1e3 if len(refusals) else float("nan")
    p50, p99 = report.percentile(50) * 1e3, report.percentile(99) * 1e3
    bound = 2 * (args.queue + min(args.queue, batch)) / capacity * 1e3
    total = outcomes.ended[-1] if outcomes.ended else span
    first = sampler.mean(0, total / 4)
    last = sampler.mean(3 * total / 4, total)
    growth = (last / first - 1) * 100

    print(f"{args.model}, --max-queue-size {args.queue} (max batch {batch}), {args.factor:g}x capacity for "
          f"{args.seconds:g} s; {args.callers} callers measured capacity")  # fmt: skip
    print(f"capacity (closed loop)    {capacity:>10,.0f} requests/s  p50 {measured.percentile(50) * 1e3:.1f} ms  "
          f"p99 {measured.percentile(99) * 1e3:.1f} ms")  # fmt: skip
    print(f"offered (asked)           {rate:>10,.0f} requests/s")
    print(f"offered (sent, answered)  {answered / span:>10,.0f} requests/s  ({answered:,} in {span:.1f} s)")
    print(f"accepted (OK)             {report.ok / span:>10,.0f} requests/s  ({report.ok:,}, "
          f"{report.ok / answered:.1%} of answered)")  # fmt: skip
    refusal_p50 = float(np.percentile(refusals, 50)) * 1e3 if len(refusals) else float("nan")
    sent_p99 = float(np.percentile(accepted_sent, 99)) * 1e3 if len(accepted_sent) else float("nan")
    print(f"refused RESOURCE_EXHAUSTED{refused / span:>10,.0f} requests/s  ({refused:,}, "
          f"{refused / answered:.1%}); p50 {refusal_p50:.2f} ms p99 {refusal_p99:.2f} ms from send")  # fmt: skip
    if refused:
        print(f"  first message: {report.error_messages['RESOURCE_EXHAUSTED']}")
    print(f"accepted latency          p50 {p50:.1f} ms  p99 {p99:.1f} ms  "
          f"max {max(report.latencies, default=0) * 1e3:.1f} ms (from scheduled send); "
          f"from actual send p99 {sent_p99:.1f} ms (the gap: client lag)")  # fmt: skip
    print(f"failures by reason        {dict(outcomes.kinds) or 'none'}")
    print(f"other errors              {others or 'none'}")
    for code in others:
        print(f"  {code}: {report.error_messages.get(code, '')}")
    print(f"server RSS                before {rss_before / MIB:,.1f} MiB, after {rss_after / MIB:,.1f} MiB; "
          f"first quarter {first / MIB:,.1f} MiB, last quarter {last / MIB:,.1f} MiB ({growth:+.1f}%), "
          f"max {max(r for _, r in sampler.samples) / MIB:,.1f} MiB over {len(sampler.samples)} samples")  # fmt: skip
    print(verdict("overload refused with RESOURCE_EXHAUSTED at once", refused > 0 and refusal_p99 < args.refusal_ms,
                  f"{refused:,} refused, p99 {refusal_p99:.2f} ms < {args.refusal_ms:g} ms"))  # fmt: skip
    print(verdict("accepted p99 bounded by the queue", p99 <= bound,
                  f"p99 {p99:.1f} ms <= 2 x ({args.queue} + {min(args.queue, batch)}) / {capacity:,.0f}/s "
                  f"= {bound:.1f} ms"))  # fmt: skip
    print(verdict("no other errors", not others, f"{sum(others.values())} other errors"))
    print(verdict("resident memory flat within 10%", abs(growth) <= 10, f"{growth:+.1f}% last quarter vs first"))


if __name__ == "__main__":
    main()
