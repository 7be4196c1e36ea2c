"""One point measured: closed-loop load at rising concurrency against a server started for it,
until throughput stops rising, the latency budget is broken, requests fail, or the concurrencies
run out (as Model Analyzer sweeps perf_analyzer's concurrency)."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from cnnserve.client.bench import ProgressBar, Target, server_split
from cnnserve.client.loadgen import run_load
from cnnserve.client.scrape import scrape

GAIN = 0.05
PATIENCE = 3
"""The sweep ends after this many concurrency steps in a row that raise throughput by less than
GAIN over the best so far: one step is not enough, since with a queue delay two callers can
serve fewer items a second than one (a lone request runs at once; two wait for batch-mates) and
more callers then fill batches that leave at once."""


@dataclass(frozen=True)
class Level:
    """The load at one concurrency: the client's view, and the server's split of the time."""

    concurrency: int
    requests: int
    failed: int
    seconds: float
    items_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    queue_ms: float  # the server's mean per request
    compute_ms: float  # the server's mean per ONNX Runtime run
    batch: float  # the server's mean batch size
    error: str = ""  # the first failure's code and message

    def latency_ms(self, percentile: int) -> float:
        return {50: self.p50_ms, 95: self.p95_ms, 99: self.p99_ms}[percentile]


@dataclass(frozen=True)
class Settings:
    """How each point is measured; part of the results file's key, since a point measured
    otherwise cannot stand for this one."""

    concurrencies: tuple[int, ...]
    seconds: float
    warmup: float
    items: int
    budget_ms: float | None
    percentile: int


def sweep(
    server: str, metrics: str, target: Target, how: Settings, *,
    show: Callable[[Level], None] = lambda level: None, progress: bool = True,
) -> tuple[list[Level], bool]:  # fmt: skip
    """The levels measured, and whether Ctrl-C cut the sweep short."""
    levels: list[Level] = []
    best, flat = 0.0, 0
    for concurrency in how.concurrencies:
        level, interrupted = _level(server, metrics, target, concurrency, how, progress)
        if interrupted:
            return levels, True
        levels.append(level)
        show(level)
        if level.failed or not level.requests:
            break  # failures at this load: more of it fails more
        if how.budget_ms is not None and level.latency_ms(how.percentile) > how.budget_ms:
            break  # more callers only wait longer
        flat = flat + 1 if level.items_per_second < best * (1 + GAIN) else 0
        if flat >= PATIENCE:
            break
        best = max(best, level.items_per_second)
    return levels, False


def _level(server: str, metrics: str, target: Target, concurrency: int, how: Settings,
           progress: bool) -> tuple[Level, bool]:  # fmt: skip
    scraped = []
    bar = ProgressBar(None, how.seconds) if progress else None
    try:
        # One connection per caller: as many callers on one connection would measure the
        # connection, and a server of several workers spreads connections, not calls.
        report = run_load(server, target.make_call, items_per_request=target.items, concurrency=concurrency,
                          duration=how.seconds, warmup=how.warmup, progress=bar,
                          on_start=lambda: scraped.append(scrape(metrics)), connections=concurrency)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    split = server_split(scraped[0], scrape(metrics), target.model) if scraped else {}
    error = next((f"{code}: {report.error_messages[code]}" for code in report.errors), "")
    ms = {p: report.percentile(p) * 1e3 for p in (50, 95, 99)}
    level = Level(concurrency, report.ok, report.failed, report.seconds, report.items_per_second, ms[50], ms[95],
                  ms[99], split.get("queue_ms", math.nan), split.get("compute_ms", math.nan),
                  split.get("batch_size", math.nan), error)  # fmt: skip
    return level, report.interrupted


def gpu_memory_mib(pids: list[int]) -> float | None:
    """GPU memory the processes ``pids`` hold, from nvidia-smi; None without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        text = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    used = 0.0
    for line in text.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and int(pid) in pids:
            used += float(mib.strip() or 0)
    return used
