"""``cnnserve compare``: the notes' depth-against-runtime question, answered on this machine.

    cnnserve compare --models vgg16,vgg19,resnet50,resnet152 --batch 1,8 --out report/

For each model and batch size, the same closed-loop measurement against the same running server
(V2 requests of random tensors); the facts (weight layers, parameters, MACs, the provider each
model really runs on) come from the server's ``cnnserve_model_info``. Writes ``report.md``,
``report.json`` and ``latency.png`` (latency against depth and against MACs) into ``--out``, with
one line per claim of the notes checked here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnserve.client.bench import Target, measure, preflight, server_split, v2_target
from cnnserve.client.channel import ClientError, add_security_arguments, configure
from cnnserve.client.scrape import Samples, metrics_address, scrape
from cnnserve.tables import human, render_table

NOTES_CLAIM = "ResNet-152: 8x more layers than VGG, yet faster at runtime"


@dataclass(frozen=True)
class Facts:
    model: str
    architecture: str
    weight_layers: int
    parameters: int
    macs: int
    provider: str
    trained: bool


@dataclass(frozen=True)
class Point:
    model: str
    batch: int
    requests: int
    p50_ms: float
    p99_ms: float
    items_per_second: float
    queue_ms: float
    compute_ms: float
    callers: int = 1
    configuration: str = ""  # with --tuned: the point tune chose


def model_facts(samples: Samples, models: list[str], metrics: str) -> dict[str, Facts]:
    info = {lab["model"]: lab for lab, _ in samples.get("cnnserve_model_info", [])}
    facts = {}
    for model in models:
        if model not in info:
            served = ", ".join(sorted(info)) or "none"
            raise ClientError(f"model {model!r} is not in the server's repository (metrics at {metrics}: {served})")
        lab = info[model]
        if lab.get("state") != "ready":
            raise ClientError(f"model {model!r} is not ready: {lab.get('reason') or lab.get('state')}")
        facts[model] = Facts(model, lab["architecture"], int(lab["weight_layers"]), int(lab["parameters"]),
                             int(lab["macs"]), lab["provider"], lab["trained"] == "true")  # fmt: skip
    return facts


def _family(architecture: str) -> str:
    if architecture.startswith("vgg_"):
        return "vgg"
    if architecture.startswith("resnet"):
        return "resnet"
    return architecture


def claims(facts: dict[str, Facts], points: list[Point], *, tuned: bool = False) -> list[str]:
    """One line per claim checked: every deeper ResNet against every VGG, at each batch size, and
    how latency ranks against depth and against MACs. ``tuned``: each model ran at its own
    configuration and number of callers, so their latencies are not comparable; the time per image
    (the inverse of throughput) is compared instead."""
    if tuned:
        return _tuned_claims(facts, points)
    p50 = {(p.model, p.batch): p.p50_ms for p in points if not math.isnan(p.p50_ms)}
    batches = sorted({p.batch for p in points})
    lines = []
    resnets = [f for f in facts.values() if _family(f.architecture) == "resnet"]
    vggs = [f for f in facts.values() if _family(f.architecture) == "vgg"]
    for batch in batches:
        for r in resnets:
            for v in vggs:
                if r.weight_layers <= v.weight_layers or (r.model, batch) not in p50 or (v.model, batch) not in p50:
                    continue
                a, b = p50[(r.model, batch)], p50[(v.model, batch)]
                lines.append(
                    f"{r.model} ({r.weight_layers} layers) faster than {v.model} ({v.weight_layers} layers, "
                    f"{r.weight_layers / v.weight_layers:.1f}x fewer) at batch {batch}: "
                    f"{'yes' if a < b else 'no'} ({a:.1f} ms against {b:.1f} ms, p50)"
                )
    if not lines:
        lines.append("no ResNet deeper than a VGG among the models: the notes' claim is not checked here")
    for batch in batches:
        measured = [f for f in facts.values() if (f.model, batch) in p50]
        if len(measured) >= 3:
            latency = [p50[(f.model, batch)] for f in measured]
            lines.append(_follows(f"at batch {batch}, latency", measured, latency))
    return lines


def _follows(what: str, measured: list[Facts], times: list[float]) -> str:
    """Whether ``times`` (one per model of ``measured``) rank with the MACs or with the depth."""
    by_depth = _rank_correlation([f.weight_layers for f in measured], times)
    by_macs = _rank_correlation([f.macs for f in measured], times)
    closer = "MACs" if by_macs > by_depth else "depth"
    return (f"{what} follows {closer} more closely: rank correlation with MACs {by_macs:+.2f}, with weight layers "
            f"{by_depth:+.2f}")


def _tuned_claims(facts: dict[str, Facts], points: list[Point]) -> list[str]:
    rate = {p.model: p.items_per_second for p in points if p.items_per_second > 0}
    lines = []
    for r in (f for f in facts.values() if _family(f.architecture) == "resnet" and f.model in rate):
        for v in (f for f in facts.values() if _family(f.architecture) == "vgg" and f.model in rate):
            if r.weight_layers <= v.weight_layers:
                continue
            a, b = rate[r.model], rate[v.model]
            lines.append(f"{r.model} ({r.weight_layers} layers) serves more images a second than {v.model} "
                         f"({v.weight_layers} layers), each at its tuned configuration: {'yes' if a > b else 'no'} "
                         f"({a:,.1f} against {b:,.1f})")  # fmt: skip
    if not lines:
        lines.append("no ResNet deeper than a VGG among the models: the notes' claim is not checked here")
    measured = [f for f in facts.values() if f.model in rate]
    if len(measured) >= 3:
        lines.append(_follows("time per image", measured, [1 / rate[f.model] for f in measured]))
    return lines


def _rank_correlation(x: list[float], y: list[float]) -> float:
    """Spearman's rho (average ranks for ties)."""

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=float)
        for value in set(values):  # ties share their mean rank
            same = [i for i, v in enumerate(values) if v == value]
            r[same] = r[same].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def chart(path: Path, facts: dict[str, Facts], points: list[Point], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    batches = sorted({p.batch for p in points})
    tuned = any(p.configuration for p in points)
    for ax, key, label in ((axes[0], "weight_layers", "weight layers (depth)"), (axes[1], "macs", "MACs per image")):
        for batch, marker in zip(batches, "osD^v<>p*h", strict=False):
            chosen = [p for p in points if p.batch == batch and not math.isnan(p.p50_ms)]
            xs = [getattr(facts[p.model], key) for p in chosen]
            # Tuned: each model at its own load, so its time per image at that load, not a latency.
            ys = [1e3 / p.items_per_second if p.configuration else p.p50_ms / batch for p in chosen]
            legend = "each at its tuned configuration" if tuned else f"batch {batch}"
            ax.scatter(xs, ys, marker=marker, s=50, label=legend)
            for x, y, p in zip(xs, ys, chosen, strict=True) if batch == batches[0] else ():
                ax.annotate(p.model, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("ms per image at the tuned throughput" if tuned else "p50 latency per image (ms)")
        ax.set_yscale("log")
        if key == "macs":
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_rows(facts: dict[str, Facts], points: list[Point]) -> list[list[Any]]:
    return [
        [p.model, facts[p.model].weight_layers, human(facts[p.model].parameters), human(facts[p.model].macs),
         facts[p.model].provider.removesuffix("ExecutionProvider"), p.batch, f"{p.p50_ms:.1f}", f"{p.p99_ms:.1f}",
         f"{p.items_per_second:.1f}", f"{p.queue_ms:.1f}", f"{p.compute_ms:.1f}"]
        + ([p.callers, p.configuration] if p.configuration else [])
        for p in points
    ]  # fmt: skip


HEADERS = ["model", "weight layers", "parameters", "MACs", "provider", "batch", "p50 ms", "p99 ms", "img/s",
           "queue ms", "compute ms"]  # fmt: skip
TUNED_HEADERS = ["callers", "tuned configuration"]


def write_report(out: Path, meta: dict[str, Any], facts: dict[str, Facts], points: list[Point],
                 verdicts: list[str]) -> list[Path]:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    png, md, js = out / "latency.png", out / "report.md", out / "report.json"
    title = f"cnnserve compare on {meta['server']} ({meta['date']})"
    if points:
        chart(png, facts, points, title)
    rows = table_rows(facts, points)
    method = meta.get("method") or (
        f"Closed loop, {meta['concurrency']} caller(s), {meta['requests']} requests per point, V2 requests of "
        f"random tensors")  # fmt: skip
    lines = [f"# {title}", "", f"{method}; latency is the client's, arrival to reply; queue and compute are the "
             f"server's own means (compute: one ONNX Runtime run of the batch).", ""]  # fmt: skip
    if meta["interrupted"]:
        lines += ["**Interrupted: only the points below were measured.**", ""]
    headers = HEADERS + (TUNED_HEADERS if any(p.configuration for p in points) else [])
    lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    lines += ["", f'The notes: "{NOTES_CLAIM}." On this machine:', ""]
    lines += [f"- {v}" for v in verdicts]
    if points:
        lines += ["", "![latency against depth and MACs](latency.png)"]
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    document = {**meta, "models": {m: asdict(f) for m, f in facts.items()}, "points": [asdict(p) for p in points],
                "claims": verdicts}  # fmt: skip
    js.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return [md, js] + ([png] if points else [])


def _parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ClientError(f"{what}: give at least one, comma-separated")
    return items


def main(args: argparse.Namespace) -> int:
    configure(args)  # --tls-*, --header: for every channel this command opens
    try:  # before minutes of measuring, not after
        importlib.import_module("matplotlib")
    except ModuleNotFoundError:
        raise ClientError(
            "compare draws its chart with matplotlib, which is not installed: pip install 'cnnserve[compare]'"
        ) from None
    if args.tuned:
        facts, points, meta = _tuned(args)
    else:
        facts, points, meta = _against_server(args)
    verdicts = claims(facts, points, tuned=bool(args.tuned))
    written = write_report(Path(args.out), meta, facts, points, verdicts)
    headers = HEADERS + (TUNED_HEADERS if args.tuned else [])
    print(render_table(headers, table_rows(facts, points), align="lrrrlrrrrrrrl"[: len(headers)]))
    if args.tuned:
        print(f"\n{meta['method']}.")
    print()
    print(f'The notes: "{NOTES_CLAIM}." On this machine:')
    for verdict in verdicts:
        print(f"- {verdict}")
    interrupted = meta["interrupted"]
    print(f"\nwrote {', '.join(str(p) for p in written)}" + (" (interrupted)" if interrupted else ""))
    return 130 if interrupted else 0


def _against_server(args: argparse.Namespace) -> tuple[dict[str, Facts], list[Point], dict[str, Any]]:
    """Every model at every batch size, against the running server ``--server``."""
    if not args.models:
        raise ClientError("--models: give the models to compare, comma-separated (or --tuned DIR)")
    models = _parse_list(args.models, "--models")
    try:
        batches = [int(b) for b in _parse_list(args.batch, "--batch")]
    except ValueError:
        raise ClientError(f"--batch: expected whole numbers, comma-separated, got {args.batch!r}") from None
    if any(b < 1 for b in batches) or args.requests < 1 or args.concurrency < 1:
        raise ClientError("--batch, --requests and --concurrency take numbers of 1 or more")
    metrics = metrics_address(args.server, args.metrics)
    facts = model_facts(scrape(metrics), models, metrics)
    # Every point is tried once before anything is measured: a wrong model or a batch over its
    # maximum stops the command now, not half-way; these requests also warm each shape up.
    targets = {}
    for model in models:
        for batch in batches:
            print(f"checking {model} at batch {batch}", file=sys.stderr, flush=True)
            target = v2_target(args.server, model, batch)
            preflight(args.server, target)
            targets[(model, batch)] = target
    points: list[Point] = []
    interrupted = False
    try:
        for (model, batch), target in targets.items():
            print(f"{model}, batch {batch}: {args.requests} requests", file=sys.stderr, flush=True)
            point, interrupted = _measure_point(args, metrics, model, batch, target)
            if point is not None:
                points.append(point)
            if interrupted:
                break
    except KeyboardInterrupt:  # between two points: what was measured is still written
        interrupted = True
    meta = {"server": args.server, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "concurrency": args.concurrency, "requests": args.requests, "batches": batches,
            "interrupted": interrupted}  # fmt: skip
    return facts, points, meta


def _tuned(args: argparse.Namespace) -> tuple[dict[str, Facts], list[Point], dict[str, Any]]:
    """Each model on a server of its own at the configuration ``cnnserve tune`` chose, loaded by
    as many callers as it served best with under the tune's goal."""
    from cnnserve.client.tune import tuned

    tune = tuned.read(args.tuned)
    models = _parse_list(args.models, "--models") if args.models else list(tune.models)
    missing = [m for m in models if m not in tune.models]
    if missing or not models:
        chosen = ", ".join(tune.models) or "none"
        raise ClientError(f"--tuned: {tune.folder / 'tune.json'} chose no configuration for "
                          f"{', '.join(missing) or 'any model'} (it chose one for: {chosen})")  # fmt: skip
    if args.seconds <= 0:
        raise ClientError(f"--seconds: expected a number above 0, got {args.seconds:g}")
    facts: dict[str, Facts] = {}
    points: list[Point] = []
    interrupted = False
    try:
        for model in models:
            point = tune.models[model]
            print(f"{model}: a server at {point.describe}; {point.concurrency} callers for {args.seconds:g} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            with tuned.serving(tune, point, args.repo) as server:
                facts.update(model_facts(scrape(server.metrics), [model], server.metrics))
                measured, interrupted = _measure_tuned(server.grpc, server.metrics, point, args.seconds)
            if measured is not None:
                points.append(measured)
            if interrupted:
                break
    except KeyboardInterrupt:  # between two models, or while a server started: it is stopped
        interrupted = True
    meta = {"server": "a server per model, each at its tuned configuration", "tuned": str(tune.folder),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": args.seconds,
            "interrupted": interrupted,
            "method": (f"{tune.summary()[0].upper()}{tune.summary()[1:]}, on a server of its own, loaded by "
                       f"the number of closed-loop callers it served best with, each on a connection of its own, "
                       f"for {args.seconds:g} s after 1 s of warm-up; V2 requests of one image of random "
                       f"data")}  # fmt: skip
    return facts, points, meta


def _measure_tuned(server: str, metrics: str, tuned: Any, seconds: float) -> tuple[Point | None, bool]:
    target = v2_target(server, tuned.model, 1)
    preflight(server, target)
    scraped: list[Samples] = []
    report = measure(server, target, concurrency=tuned.concurrency, duration=seconds, warmup=1.0,
                     connections=tuned.concurrency, on_start=lambda: scraped.append(scrape(metrics)))  # fmt: skip
    split = server_split(scraped[0], scrape(metrics), tuned.model) if scraped else {}
    if not report.ok:
        return None, report.interrupted
    point = Point(tuned.model, 1, report.ok, report.percentile(50) * 1e3, report.percentile(99) * 1e3,
                  report.items_per_second, split.get("queue_ms", math.nan), split.get("compute_ms", math.nan),
                  tuned.concurrency, tuned.describe)  # fmt: skip
    return point, report.interrupted


def _measure_point(
    args: argparse.Namespace, metrics: str, model: str, batch: int, target: Target
) -> tuple[Point | None, bool]:
    scraped: list[Samples] = []
    report = measure(args.server, target, concurrency=args.concurrency, requests=args.requests,
                     on_start=lambda: scraped.append(scrape(metrics)))  # fmt: skip
    split = server_split(scraped[0], scrape(metrics), model) if scraped else {}
    if not report.ok:
        return None, report.interrupted
    queue, compute = split.get("queue_ms", math.nan), split.get("compute_ms", math.nan)
    point = Point(model, batch, report.ok, report.percentile(50) * 1e3, report.percentile(99) * 1e3,
                  report.items_per_second, queue, compute)  # fmt: skip
    return point, report.interrupted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="comma-separated, e.g. vgg16,vgg19,resnet50,resnet152 (with --tuned: "
                                          "default, every model the tune chose a configuration for)")  # fmt: skip
    parser.add_argument("--batch", default="1", help="batch sizes, comma-separated (default: 1)")
    parser.add_argument("--out", default="report", help="folder for report.md, report.json, latency.png")
    parser.add_argument("--requests", type=int, default=20, help="measured requests per point (default: 20)")
    parser.add_argument("--concurrency", type=int, default=1, help="callers (default: 1: latency, no queueing)")
    parser.add_argument("--server", default="localhost:8001", help="gRPC address (default: %(default)s)")
    add_security_arguments(parser)
    parser.add_argument("--metrics", help="metrics address (default: the server's host, port 8002)")
    tuned = parser.add_argument_group("each model at its tuned configuration")
    tuned.add_argument("--tuned", metavar="DIR",
                       help="the folder `cnnserve tune` wrote: instead of --server, start a server for each model "
                            "at the configuration the tune chose, and load it with the callers it served best "
                            "with")  # fmt: skip
    tuned.add_argument("--repo", help="with --tuned: the repository (default: the tune's)")
    tuned.add_argument("--seconds", type=float, default=10.0,
                       help="with --tuned: measured seconds for each model (default: 10)")
