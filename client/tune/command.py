"""``cnnserve tune``: the command line around the search.

    cnnserve tune lenet5 resnet50 --repo models --latency-budget-ms 50 --out tune-report [--apply]

For each model: a server is started for each point the search visits (on free ports, serving that
model alone), loaded at rising concurrency, and stopped; the point that serves the most items a
second within the budget is chosen. Export's default is always the first point measured, so the
report says what tuning bought.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from cnnserve.client.bench import preflight, v2_target
from cnnserve.client.channel import ClientError
from cnnserve.client.scrape import scrape
from cnnserve.client.tune import launch, report
from cnnserve.client.tune.apply import apply
from cnnserve.client.tune.results import Measured, Results
from cnnserve.client.tune.search import OBJECTIVES, SEARCHES, Goal, Walk
from cnnserve.client.tune.space import PREFERRED, Point, Space, powers_of_two
from cnnserve.client.tune.sweep import GAIN, PATIENCE, Level, Settings, gpu_memory_mib, sweep
from cnnserve.repository import RepositoryError, entries, load_entry

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"


def _is_cuda(device: str) -> bool:
    """Whether the servers will run on CUDA, which decides the space: ``auto`` guesses as the
    server decides (a CUDA build of ONNX Runtime and a GPU), and the first server started says
    whether the guess was right (:meth:`Tuner.check_provider`)."""
    if device != "auto":
        return device == "cuda"
    import onnxruntime

    if CUDA not in onnxruntime.get_available_providers() or shutil.which("nvidia-smi") is None:
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def default_space(cores: int, cuda: bool) -> Space:
    """Model Analyzer's automatic ranges, sized to this machine: batch sizes up to 128, instances
    and workers up to the cores (4 at most), intra-op threads up to the cores."""
    return Space(
        max_batch_size=powers_of_two(1, 128),
        preferred=PREFERRED,
        max_queue_delay_us=(0, 500, 1000, 2000, 5000, 10000),
        instances=(1, 2, 3, 4) if cuda else powers_of_two(1, min(cores, 4)),
        workers=powers_of_two(1, min(cores, 4)),
        intra_op_threads=(0, 1) if cuda else (0, *powers_of_two(1, cores)),
        batch_shapes=("padded", "exact") if cuda else ("auto",),
        cores=cores,
    )


def _ints(text: str | None, flag: str, least: int) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise ClientError(f"{flag}: expected whole numbers, comma-separated, got {text!r}") from None
    if not values or values[0] < least:
        raise ClientError(f"{flag}: expected whole numbers of {least} or more, comma-separated, got {text!r}")
    return values


def _words(text: str | None, flag: str, choices: tuple[str, ...]) -> tuple[str, ...] | None:
    if text is None:
        return None
    values = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    wrong = [v for v in values if v not in choices]
    if not values or wrong:
        raise ClientError(f"{flag}: expected some of {', '.join(choices)}, comma-separated, got {text!r}")
    return values


def space_from(args: argparse.Namespace, cuda: bool, cores: int) -> Space:
    space = default_space(cores, cuda)
    given: dict[str, Any] = {
        "max_batch_size": _ints(args.max_batch_sizes, "--max-batch-sizes", 1),
        "preferred": _words(args.preferred, "--preferred", PREFERRED),
        "max_queue_delay_us": _ints(args.queue_delays_us, "--queue-delays-us", 0),
        "instances": _ints(args.instances, "--instances", 1),
        "workers": _ints(args.workers, "--workers", 1),
        "intra_op_threads": _ints(args.intra_op_threads, "--intra-op-threads", 0),
        "batch_shapes": _words(args.batch_shapes, "--batch-shapes", ("padded", "exact") if cuda else ("auto",)),
    }
    values = {**asdict(space), **{k: v for k, v in given.items() if v is not None}}
    return Space(**values)


def start_point(config: Any, cuda: bool) -> Point:
    """What ``cnnserve serve`` runs the entry at by default: export's batching, the server's."""
    return Point(config.max_batch_size, "export", config.max_queue_delay_us,
                 config.instance_count or (2 if cuda else 1), 1, 0, "padded" if cuda else "auto")  # fmt: skip


def goal_from(args: argparse.Namespace, cuda: bool) -> Goal:
    if args.objective == "latency" and args.min_throughput is None:
        raise ClientError("--objective latency: give --min-throughput, the load the latency is wanted at "
                          "(without it, the lowest latency is one caller's)")  # fmt: skip
    if args.max_gpu_memory is not None and not cuda:
        raise ClientError("--max-gpu-memory: the servers run on the CPU (--device); it applies on CUDA only")
    for flag, value in (("--latency-budget-ms", args.latency_budget_ms), ("--min-throughput", args.min_throughput),
                        ("--max-gpu-memory", args.max_gpu_memory)):  # fmt: skip
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ClientError(f"{flag}: expected a number above 0, got {value:g}")
    return Goal(args.objective, args.latency_budget_ms, args.percentile, args.min_throughput, args.max_gpu_memory)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a supervisor's workers), from /proc."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


class Tuner:
    """One run of the command: the results file, the clock, and the live output."""

    def __init__(self, args: argparse.Namespace, how: Settings, goal: Goal, cuda: bool) -> None:
        self.args, self.how, self.goal, self.cuda = args, how, goal, cuda
        self.results = Results(Path(args.out) / "results.jsonl", how)
        self.out_of_time = False
        self.interrupted = False

    def tune(self, model: str, entry: Path) -> report.ModelResult:
        try:
            config = load_entry(entry)
        except RepositoryError as exc:
            raise ClientError(str(exc)) from None
        space = space_from(self.args, self.cuda, self.args.cores)
        start = start_point(config, self.cuda)
        space = space.with_start(start)
        export_preferred = config.preferred_batch_sizes
        began = time.monotonic()
        count, size = [0], space.size()
        limit = f" of {self.args.max_minutes:g}" if self.args.max_minutes else ""

        def measure(point: Point) -> Measured:
            count[0] += 1
            minutes = (time.monotonic() - began) / 60
            print(f"{model}, point {count[0]} of {size} in the space, {minutes:.1f}{limit} min: "
                  f"{point.describe(export_preferred)}", flush=True)  # fmt: skip
            known = self.results.get(model, point)
            if known is not None:
                print("  measured before (results.jsonl): " + self._summary(known), flush=True)
                return known
            measured = self._measure(model, point, export_preferred)
            self.results.add(measured)
            print("  " + self._summary(measured), flush=True)
            return measured

        deadline = began + self.args.max_minutes * 60 if self.args.max_minutes else math.inf
        walk = Walk(space, self.goal, measure, deadline)
        measured = walk.run(self.args.search, start)
        self.out_of_time = self.out_of_time or walk.out_of_time
        self.interrupted = walk.interrupted
        chosen = self.goal.chosen(measured)
        again = None
        if chosen is not None and chosen is not measured[0] and self.args.confirm and not self.interrupted:
            # The chosen point is the best of many noisy measurements, so its own figure flatters
            # it: both are measured once more, one after the other, for the ratio the report gives.
            print(f"{model}: export's default and the chosen point measured again, one after the other", flush=True)
            try:
                again = (self._measure(model, start, export_preferred),
                         self._measure(model, chosen.point, export_preferred))
            except KeyboardInterrupt:
                self.interrupted = True
            else:
                for each in again:
                    print("  " + self._summary(each), flush=True)
        return report.ModelResult(model, export_preferred, measured, chosen, time.monotonic() - began, again)

    def _measure(self, model: str, point: Point, export_preferred: tuple[int, ...]) -> Measured:
        flags = point.server_flags(export_preferred)
        try:
            with launch.serving(self.args.repo, model, self.args.device, flags, self.args.start_timeout) as server:
                print(f"  server pid {server.pid} ready in {server.seconds:.1f} s", flush=True)
                self.check_provider(model, server.metrics)
                target = v2_target(server.grpc, model, self.how.items)
                preflight(server.grpc, target)
                levels, interrupted = sweep(server.grpc, server.metrics, target, self.how, show=self._show,
                                            progress=self.args.progress)  # fmt: skip
                memory = gpu_memory_mib(_process_tree(server.pid)) if self.cuda else None
                if interrupted:
                    raise KeyboardInterrupt  # the server is stopped on the way out; the point is not kept
                return Measured(model, point, tuple(levels), "", server.seconds, memory)
        except launch.StartFailed as exc:
            return Measured(model, point, failed=f"the server did not start: {exc}")

    def check_provider(self, model: str, metrics: str) -> None:
        """The server's own word on where the model runs, against the space's assumption."""
        info = [lab for lab, _ in scrape(metrics).get("cnnserve_model_info", []) if lab.get("model") == model]
        provider = info[0].get("provider", "") if info else ""
        if provider and (provider == CUDA) != self.cuda:
            raise ClientError(f"the server runs {model} on {provider}, but tune expected "
                              f"{'CUDA' if self.cuda else 'the CPU'}: give --device cpu or --device cuda")  # fmt: skip

    def _show(self, level: Level) -> None:
        p = self.goal.percentile
        failed = f"  {level.failed} failed: {level.error}" if level.failed else ""
        callers = f"{level.concurrency:>4} caller{'s' if level.concurrency > 1 else ' '}"
        print(f"  {callers} {level.items_per_second:>10,.1f} items/s  p50 {level.p50_ms:7.2f} ms  "
              f"p{p} {level.latency_ms(p):7.2f} ms  queue {level.queue_ms:6.2f} ms  compute {level.compute_ms:6.2f} ms"
              f"  batch {level.batch:5.1f}{failed}", flush=True)  # fmt: skip

    def _summary(self, measured: Measured) -> str:
        if measured.failed:
            return measured.failed
        level = self.goal.best_level(measured)
        if level is None:
            why = self.goal.why_not(measured, measured.levels[0]) if measured.levels else "nothing measured"
            return f"meets nothing: at {measured.levels[0].concurrency if measured.levels else 0} callers, {why}"
        return (f"best: {level.items_per_second:,.1f} items/s at {level.concurrency} caller(s), "
                f"p{self.goal.percentile} {level.latency_ms(self.goal.percentile):.2f} ms")  # fmt: skip


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # as Ctrl-C: stop the server, keep what was measured


def main(args: argparse.Namespace) -> int:
    try:  # before minutes of measuring, not after
        importlib.import_module("matplotlib")
    except ModuleNotFoundError:
        raise ClientError("tune draws its chart with matplotlib, which is not installed: "
                          "pip install 'cnnserve[compare]'") from None  # fmt: skip
    cuda = _is_cuda(args.device)
    args.cores = args.cores or os.cpu_count() or 1
    goal = goal_from(args, cuda)
    concurrencies = _ints(args.concurrency, "--concurrency", 1) or powers_of_two(1, args.max_concurrency)
    if not concurrencies:
        raise ClientError(f"--max-concurrency: expected 1 or more, got {args.max_concurrency}")
    if args.seconds <= 0 or args.warmup < 0 or args.items < 1:
        raise ClientError("--seconds must be above 0, --warmup 0 or more, --items 1 or more")
    try:
        found = entries(args.repo)
    except RepositoryError as exc:
        raise ClientError(str(exc)) from None
    missing = [m for m in args.models if m not in found]
    if missing:
        raise ClientError(f"{', '.join(missing)}: not in the repository {args.repo} (it has: "
                          f"{', '.join(found) or 'nothing'})")  # fmt: skip
    how = Settings(concurrencies, args.seconds, args.warmup, args.items, goal.budget_ms, goal.percentile)
    tuner = Tuner(args, how, goal, cuda)
    if tuner.results.measured or tuner.results.other_settings:
        print(f"resuming from {tuner.results.path}: {len(tuner.results.measured)} points measured with these settings"
              + (f", {tuner.results.other_settings} with others (not reused)" if tuner.results.other_settings else ""))
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    results: list[report.ModelResult] = []
    began = time.monotonic()
    try:
        for model in args.models:
            result = tuner.tune(model, found[model])
            if result.measured:
                results.append(result)
            if tuner.interrupted:
                break
    except KeyboardInterrupt:  # between two models' searches
        tuner.interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
    interrupted = tuner.interrupted
    if interrupted:
        print("\ninterrupted: the servers are stopped; the report has what was measured", file=sys.stderr)
    return _finish(args, tuner, goal, results, interrupted, time.monotonic() - began)


def _finish(args: argparse.Namespace, tuner: Tuner, goal: Goal, results: list[report.ModelResult],
            interrupted: bool, seconds: float) -> int:  # fmt: skip
    how = tuner.how
    meta = {"device": f"{'CUDA' if tuner.cuda else 'CPU'}, {args.cores} cores",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repo": str(Path(args.repo).resolve()),
            "cuda": tuner.cuda, "search": args.search, "seconds": seconds, "interrupted": interrupted,
            "out_of_time": tuner.out_of_time, "measurement": asdict(how),
            "how": _how(args.search, how, seconds)}  # fmt: skip
    written = report.write(Path(args.out), meta, results, goal)
    for result in results:
        print()
        report.print_table(result, goal)
        print(report.verdict(result, goal))
    print(f"\nwrote {', '.join(str(p) for p in written)}" + (" (interrupted)" if interrupted else ""))
    if interrupted:
        return 130
    if args.apply:
        _apply(args, tuner, goal, results)
    unmet = [r.model for r in results if r.chosen is None]
    if unmet:
        print(f"no point measured meets the goal for {', '.join(unmet)}: loosen it (--latency-budget-ms, "
              f"--min-throughput) or widen the space", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _how(search: str, how: Settings, seconds: float) -> str:
    return (f"{search} search; each point a server of its own, loaded by closed-loop callers "
            f"({', '.join(map(str, how.concurrencies))}), each caller on a connection of its own, stopping after "
            f"{PATIENCE} steps in a row that raise throughput by less than {GAIN:.0%} or at the first that breaks the "
            f"budget; {how.seconds:g} s measured at each after {how.warmup:g} s of warm-up; V2 requests of "
            f"{how.items} item{'s' if how.items > 1 else ''} of random data; {seconds / 60:.1f} min in all.")


def _apply(args: argparse.Namespace, tuner: Tuner, goal: Goal, results: list[report.ModelResult]) -> None:
    found = entries(args.repo)
    for result in results:
        if result.chosen is None:
            continue
        level = goal.best_level(result.chosen)
        assert level is not None
        tuning = {"tool": "cnnserve tune", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "device": "cuda" if tuner.cuda else "cpu", "cores": args.cores, "goal": asdict(goal),
                  "concurrency": level.concurrency, "items_per_second": level.items_per_second,
                  f"p{goal.percentile}_ms": level.latency_ms(goal.percentile)}  # fmt: skip
        kept = apply(found[result.model], result.chosen, result.export_preferred, tuning)
        print(f"applied to {found[result.model] / 'config.json'} (the old one kept as {kept.name}); serve it with "
              f"`cnnserve serve --repo {args.repo} {' '.join(result.chosen.point.process_flags())}`")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="repository entries to tune, one after another")
    parser.add_argument("--repo", required=True, help="the model repository the servers serve")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where the servers run (default: auto)")
    parser.add_argument("--out", default="tune-report",
                        help="folder for tune.md, tune.json, tune.png and results.jsonl (default: %(default)s)")
    goal = parser.add_argument_group("the goal (Model Analyzer's constraints and objectives)")
    goal.add_argument("--latency-budget-ms", type=float, help="the highest latency a point may show at --percentile")
    goal.add_argument("--percentile", type=int, choices=(95, 99), default=99,
                      help="the latency the budget is on (default: 99)")
    goal.add_argument("--min-throughput", type=float, help="the fewest items a second a point must serve")
    goal.add_argument("--max-gpu-memory", type=float, metavar="MIB", help="on CUDA: the most GPU memory (MiB)")
    goal.add_argument("--objective", choices=OBJECTIVES, default="throughput",
                      help="throughput: the most items a second; latency: the lowest latency at --min-throughput "
                           "(default: throughput)")  # fmt: skip
    search = parser.add_argument_group("the search")
    search.add_argument("--search", choices=SEARCHES, default="quick",
                        help="quick: hill climbing from export's default; brute: every point (default: quick)")
    search.add_argument("--max-minutes", type=float,
                        help="stop each model's search after this long (the point under way finishes); run the "
                             "same command again to go on from results.jsonl")  # fmt: skip
    search.add_argument("--max-batch-sizes", metavar="N,N",
                        help="max_batch_size values (default: 1 to 128, powers of 2)")
    search.add_argument("--preferred", metavar="WAY,WAY",
                        help="preferred batch sizes: export (export's, clamped), max (the maximum alone), none "
                             "(default: all three)")  # fmt: skip
    search.add_argument("--queue-delays-us", metavar="US,US", help="max_queue_delay_us values "
                                                                   "(default: 0,500,1000,2000,5000,10000)")  # fmt: skip
    search.add_argument("--instances", metavar="N,N", help="instance counts (default: 1 to the cores, 4 at most; "
                                                           "on CUDA 1 to 4)")  # fmt: skip
    search.add_argument("--workers", metavar="N,N", help="worker processes (default: 1 to the cores, 4 at most)")
    search.add_argument("--intra-op-threads", metavar="N,N",
                        help="ONNX Runtime intra-op threads per worker, 0 for its default (default: 0 and 1 to the "
                             "cores; workers x threads never above the cores)")  # fmt: skip
    search.add_argument("--batch-shapes", metavar="WAY,WAY", help="on CUDA: padded, exact (default: both)")
    search.add_argument("--cores", type=int, default=0, help="cores the servers may use (default: all of them)")
    load = parser.add_argument_group("the load at each point")
    load.add_argument("--concurrency", metavar="N,N", help="closed-loop callers, in order "
                                                           "(default: 1, 2, 4, ... --max-concurrency)")  # fmt: skip
    load.add_argument("--max-concurrency", type=int, default=64, help="the most callers (default: 64)")
    load.add_argument("--seconds", type=float, default=3.0, help="measured seconds at each concurrency (default: 3)")
    load.add_argument("--warmup", type=float, default=1.0, help="seconds of load not measured first (default: 1)")
    load.add_argument("--items", type=int, default=1, help="items (images) per request (default: 1)")
    load.add_argument("--start-timeout", type=float, default=300, help="seconds a server may take to be ready")
    parser.add_argument("--no-confirm", dest="confirm", action="store_false",
                        help="do not measure export's default and the chosen point again at the end")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--apply", action="store_true",
                        help="write each model's chosen point into its config.json (the old one kept beside it)")
