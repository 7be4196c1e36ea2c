"""The builders' subcommands: ``cnnserve models``, ``summary`` and ``export`` (they need torch)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnserve import builders
from cnnserve.builders.export import ExportError
from cnnserve.builders.export import export as export_entry
from cnnserve.builders.summary import summary as layer_summary
from cnnserve.builders.summary import volume
from cnnserve.builders.weights import CheckpointError
from cnnserve.errors import CommandError
from cnnserve.repo_listing import print_repository
from cnnserve.tables import human, render_table

Run = Callable[[argparse.Namespace], int]


def _one_line_errors(run: Run) -> Run:
    """The builders' refusals become one-line command errors."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (builders.UnknownArchitectureError, builders.UnknownOptionError, ExportError, CheckpointError) as exc:
            raise CommandError(str(exc)) from None

    return wrapper


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--option k=256`` -> {"k": 256}; values are parsed as JSON where they can be."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@_one_line_errors
def models(args: argparse.Namespace) -> int:
    """``cnnserve models``."""
    rows: list[dict[str, Any]] = []
    for name in builders.names():
        spec = builders.get(name)
        facts = layer_summary(name)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "task": spec.task,
                "input": volume(spec.input_shape),
                "weight_layers": facts.weight_layers,
                "parameters": facts.parameters,
                "macs": facts.macs,
                "aliases": list(spec.aliases),
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        render_table(
            ["name", "input", "weight layers", "parameters", "MACs", "description"],
            [
                [r["name"], r["input"], r["weight_layers"], human(r["parameters"]), human(r["macs"]), r["description"]]
                for r in rows
            ],
            align="llrrrl",
        )
    )
    return 0


@_one_line_errors
def summary(args: argparse.Namespace) -> int:
    """``cnnserve summary NAME``."""
    facts = layer_summary(args.name, **_parse_options(args.option))
    if args.json:
        print(json.dumps(facts.to_dict(all_layers=args.all), indent=2))
        return 0
    rows: list[list[Any]] = [["input", "", volume(facts.input_shape), _count(facts.input_shape), 0, 0]]
    for r in facts.listed_rows(all_layers=args.all):
        rows.append([r.name, r.layer, r.volume, r.activations, r.parameters, r.macs])
    print(f"{facts.architecture}: per-layer summary (one image, float32)")
    print(render_table(["layer", "what", "output", "activations", "parameters", "MACs"], rows, align="lllrrr"))
    print()
    print(f"weight layers      {facts.weight_layers}")
    print(f"parameters         {facts.parameters:,} ({human(facts.parameters)}, {human(facts.parameters * 4)}B)")
    print(f"MACs               {facts.macs:,} ({human(facts.macs)})")
    print(
        f"activation memory  {facts.activations:,} values ({human(facts.activations)}),"
        f" {facts.activation_bytes:,} bytes ({human(facts.activation_bytes)}B) for one forward pass"
    )
    return 0


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@_one_line_errors
def export(args: argparse.Namespace) -> int:
    """``cnnserve export NAME...``."""
    # Unknown names and options fail before any work is done.
    specs = [builders.get(n) for n in args.names]
    options = _parse_options(args.option)
    for spec in specs:
        spec.check_options(options)
    if args.checkpoint and args.random_weights:
        raise CommandError("--checkpoint and --random-weights contradict each other: give one")
    if args.checkpoint and len(specs) > 1:
        raise CommandError("--checkpoint loads one network's weights: give exactly one NAME with it")
    if args.name and len(specs) > 1:
        raise CommandError("--name renames one entry: give exactly one NAME with it")
    repo = Path(args.repo)
    results = []
    total = len(specs)
    for i, given in enumerate(args.names, 1):
        entry = args.name or builders.registry.canonical_or_alias(given)
        there = repo / entry / str(args.version) if args.version else repo / entry / "config.json"
        if args.if_missing and there.exists():
            _progress(f"[{i}/{total}] {entry}: already in {repo}/, kept (--if-missing)")
            continue
        started = time.perf_counter()

        def progress(step: str, entry: str = entry, i: int = i, started: float = started) -> None:
            _progress(f"[{i}/{total}] {entry}: {step} ({time.perf_counter() - started:.1f}s)")

        result = export_entry(
            given,
            repo,
            opset=args.opset,
            checkpoint=args.checkpoint,
            fp16=args.fp16,
            uint8_input=args.uint8_input,
            options=options,
            entry_name=args.name,
            max_batch_size=args.max_batch_size,
            version=args.version,
            random_weights=args.random_weights,
            progress=progress,
        )
        _progress(f"[{i}/{total}] {entry}: written to {result.path} in {result.seconds:.1f}s")
        results.append(result)
    print_repository(repo, args.json)
    return 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--all", action="store_true", help="also list ReLU, batch norm, dropout and other in-place layers"
    )
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="builder option, e.g. k=256")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME")
    parser.add_argument("--repo", default="exported", help="model repository folder (default: exported)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    parser.add_argument("--checkpoint", metavar="FILE", help="a state_dict to load (torch.load weights_only=True)")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights, instead of those cnnserve ships (alphago_policy) or trains at export (lenet5)",
    )
    parser.add_argument("--fp16", action="store_true", help="compute in float16 (inputs and outputs stay float32)")
    parser.add_argument(
        "--uint8-input",
        action="store_true",
        help="take uint8 pixels NHWC and normalise them in the graph (image models)",
    )
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="builder option, e.g. k=256")
    parser.add_argument("--name", help="repository entry name (default: the architecture's name)")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        metavar="N",
        help="the entry's max_batch_size (default: the architecture's, e.g. 32 for the ImageNet networks); "
        "its preferred batch sizes are clamped to it, and it is one of them when larger",
    )
    parser.add_argument(
        "--version",
        type=int,
        metavar="N",
        help="add version folder N beside the entry's others (and rewrite its config.json), instead of replacing "
        "the entry with version 1; a server in poll mode rolls the new version out",
    )
    parser.add_argument("--if-missing", action="store_true", help="skip entries that already exist")
    parser.add_argument("--json", action="store_true", help="print the repository listing as JSON")
