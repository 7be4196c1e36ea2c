"""What ``cnnserve tune`` writes: a table per model of every point tried, the chosen point and
why, a chart of throughput against latency with the frontier marked; as Markdown, JSON and PNG."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnserve.client.tune.results import Measured
from cnnserve.client.tune.search import Goal
from cnnserve.client.tune.sweep import Level
from cnnserve.tables import render_table


@dataclass(frozen=True)
class ModelResult:
    """One model's tuning: every point measured (the start, export's default, first)."""

    model: str
    export_preferred: tuple[int, ...]
    measured: list[Measured]
    chosen: Measured | None
    seconds: float  # the time this model's tuning took, points read back from the results file included
    again: tuple[Measured, Measured] | None = None  # export's default and the chosen, measured once more

    @property
    def default(self) -> Measured:
        return self.measured[0]


HEADERS = ["", "configuration", "callers", "items/s", "p50 ms", "p99 ms", "queue ms", "compute ms", "batch",
           "GPU MiB", "meets the goal"]  # fmt: skip


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def rows(result: ModelResult, goal: Goal) -> list[list[str]]:
    """One row per point: its best level under the goal, or its last level and why it fails."""
    table = []
    for measured in sorted(result.measured, key=goal.rank, reverse=True):
        level = goal.best_level(measured)
        shown = level or (measured.levels[-1] if measured.levels else None)
        if measured.failed:
            why = measured.failed
        elif level is None:
            why = "no: " + (goal.why_not(measured, measured.levels[0]) if measured.levels else "not measured")
        else:
            why = "yes"
        mark = "chosen" if measured is result.chosen else ("default" if measured is result.default else "")
        if measured is result.chosen and measured is result.default:
            mark = "chosen, default"
        cells = [mark, measured.point.describe(result.export_preferred)]
        if shown is None:
            cells += ["-"] * 7
        else:
            cells += [str(shown.concurrency), _f(shown.items_per_second), _f(shown.p50_ms), _f(shown.p99_ms),
                      _f(shown.queue_ms, 2), _f(shown.compute_ms, 2), _f(shown.batch)]  # fmt: skip
        table.append([*cells, _f(measured.gpu_memory_mib, 0), why])
    return table


def verdict(result: ModelResult, goal: Goal) -> str:
    """The chosen point and why, against export's default under the same goal."""
    what = (f"the most items a second with p{goal.percentile} within {goal.budget_ms:g} ms"
            if goal.budget_ms is not None else "the most items a second") if goal.objective == "throughput" else (
            f"the lowest p{goal.percentile} latency")  # fmt: skip
    if goal.min_throughput is not None:
        what += f", at least {goal.min_throughput:g} items/s"
    if result.chosen is None:
        return f"{result.model}: no point measured meets the goal ({what})."
    level = goal.best_level(result.chosen)
    assert level is not None
    base = goal.best_level(result.default)
    text = (f"{result.model}: chosen for {what}: {result.chosen.point.describe(result.export_preferred)}; "
            f"{level.items_per_second:,.1f} items/s at {_callers(level.concurrency)}, p50 {level.p50_ms:.1f} ms, "
            f"p{goal.percentile} {level.latency_ms(goal.percentile):.1f} ms.")  # fmt: skip
    if result.chosen is result.default:
        return text + " Export's default is the best point measured."
    text += " " + (_against(base, level, goal, "Export's default") if base is not None
                   else "Export's default meets no level of the goal.")  # fmt: skip
    if result.again is not None:
        base_again, chosen_again = goal.best_level(result.again[0]), goal.best_level(result.again[1])
        text += " Measured again, one after the other: "
        if base_again is None or chosen_again is None:
            which = "export's default" if base_again is None else "the chosen point"
            return text + which + " met no level of the goal."
        text += _against(base_again, chosen_again, goal, "export's default")
    return text


def _against(base: Level, level: Level, goal: Goal, name: str) -> str:
    if goal.objective == "throughput":
        ratio = level.items_per_second / base.items_per_second
        return (f"{name} {base.items_per_second:,.1f} items/s at {_callers(base.concurrency)}, the chosen point "
                f"{level.items_per_second:,.1f} at {_callers(level.concurrency)}: {ratio:.2f}x.")  # fmt: skip
    p = goal.percentile
    ratio = base.latency_ms(p) / level.latency_ms(p)
    return f"{name} p{p} {base.latency_ms(p):.1f} ms, the chosen point {level.latency_ms(p):.1f} ms: {ratio:.2f}x less."


def _callers(n: int) -> str:
    return f"{n} caller{'s' if n > 1 else ''}"


def frontier(levels: Sequence[Level], percentile: int) -> list[Level]:
    """The levels no other beats on both latency and throughput, by rising latency."""
    ordered = sorted((lv for lv in levels if lv.requests and not lv.failed), key=lambda lv: lv.latency_ms(percentile))
    best, kept = -math.inf, []
    for level in ordered:
        if level.items_per_second > best:
            kept.append(level)
            best = level.items_per_second
    return kept


def chart(path: Path, results: list[ModelResult], goal: Goal, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5), constrained_layout=True, squeeze=False)
    p = goal.percentile
    for ax, result in zip(axes[0], results, strict=True):
        every: list[Level] = []
        for measured in result.measured:
            good = [lv for lv in measured.levels if lv.requests and not lv.failed]
            every += good
            ax.plot([lv.latency_ms(p) for lv in good], [lv.items_per_second for lv in good], "-o", color="0.75",
                    markersize=3, linewidth=0.6, zorder=1)  # fmt: skip
        edge = frontier(every, p)
        ax.step([lv.latency_ms(p) for lv in edge], [lv.items_per_second for lv in edge], where="post", color="C0",
                label="frontier", zorder=2)  # fmt: skip
        marked: list[tuple[Measured | None, str, str, str]] = [(result.default, "s", "C1", "export's default"),
                                                               (result.chosen, "*", "C3", "chosen")]  # fmt: skip
        for shown, marker, colour, label in marked:
            level = goal.best_level(shown) if shown is not None else None
            if level is not None:
                ax.scatter([level.latency_ms(p)], [level.items_per_second], marker=marker, s=160, color=colour,
                           label=f"{label} ({_callers(level.concurrency)})", zorder=3)  # fmt: skip
        if goal.budget_ms is not None:
            ax.axvline(goal.budget_ms, color="C3", linestyle="--", linewidth=1, label=f"budget {goal.budget_ms:g} ms")
        ax.set_xscale("log")
        ax.set_xlabel(f"p{p} latency (ms)")
        ax.set_ylabel("throughput (items/s)")
        ax.set_title(f"{result.model}: {len(result.measured)} points")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, meta: dict[str, Any], results: list[ModelResult], goal: Goal) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js, png = out / "tune.md", out / "tune.json", out / "tune.png"
    title = f"cnnserve tune, {meta['device']} ({meta['date']})"
    lines = [f"# {title}", "", meta["how"], ""]
    if meta["interrupted"] or meta["out_of_time"]:
        lines += [f"**{'Interrupted' if meta['interrupted'] else 'Out of time'}: the search did not finish; the "
                  f"points below are those measured.**", ""]  # fmt: skip
    for result in results:
        lines += [f"## {result.model}", "", verdict(result, goal), "",
                  f"{len(result.measured)} points, {result.seconds / 60:.1f} min.", ""]  # fmt: skip
        lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(row) + " |" for row in rows(result, goal)]
        lines.append("")
    if any(r.measured for r in results):
        chart(png, [r for r in results if r.measured], goal, title)
        lines += ["![throughput against latency](tune.png)", ""]
    md.write_text("\n".join(lines), encoding="utf-8")
    document = {**meta, "goal": asdict(goal), "models": {r.model: _model_json(r, goal) for r in results}}
    js.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return [md, js] + ([png] if png.exists() and any(r.measured for r in results) else [])


def _model_json(result: ModelResult, goal: Goal) -> dict[str, Any]:
    def point(measured: Measured | None) -> dict[str, Any] | None:
        if measured is None:
            return None
        level = goal.best_level(measured)
        return {"point": asdict(measured.point), "describe": measured.point.describe(result.export_preferred),
                "preferred_sizes": list(measured.point.preferred_sizes(result.export_preferred)),
                "server_flags": measured.point.process_flags(),
                "level": asdict(level) if level is not None else None}  # fmt: skip

    return {"chosen": point(result.chosen), "default": point(result.default), "verdict": verdict(result, goal),
            "seconds": result.seconds, "export_preferred": list(result.export_preferred),
            "measured": [{**asdict(m), "meets": goal.best_level(m) is not None} for m in result.measured],
            "measured_again": None if result.again is None else {"default": asdict(result.again[0]),
                                                                 "chosen": asdict(result.again[1])}}  # fmt: skip


def print_table(result: ModelResult, goal: Goal) -> None:
    print(render_table(HEADERS, rows(result, goal), align="llrrrrrrrrl"))
