"""The ``cnnserve`` command line: one script, one subcommand per job.

Subcommands that list things take ``--json``; errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from server.settings import SettingsError
from server.settings import add_arguments as add_serve_arguments
from server.tables import human, render_table

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--option k=256`` -> {"k": 256}; values are parsed as JSON where they can be."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def cmd_models(args: argparse.Namespace) -> int:
    import builders
    from builders.summary import summary, volume

    rows: list[dict[str, Any]] = []
    for name in builders.names():
        spec = builders.get(name)
        facts = summary(name)
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


def cmd_summary(args: argparse.Namespace) -> int:
    from builders.summary import summary, volume

    facts = summary(args.name, **_parse_options(args.option))
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


def cmd_export(args: argparse.Namespace) -> int:
    import builders
    from builders.export import export

    # Unknown names and options fail before any work is done.
    specs = [builders.get(n) for n in args.names]
    options = _parse_options(args.option)
    for spec in specs:
        spec.check_options(options)
    if args.checkpoint and len(specs) > 1:
        raise CliError("--checkpoint loads one network's weights: give exactly one NAME with it")
    if args.name and len(specs) > 1:
        raise CliError("--name renames one entry: give exactly one NAME with it")
    repo = Path(args.repo)
    results = []
    total = len(specs)
    for i, given in enumerate(args.names, 1):
        entry = args.name or builders.registry.canonical_or_alias(given)
        if args.if_missing and (repo / entry / "config.json").is_file():
            _progress(f"[{i}/{total}] {entry}: already in {repo}/, kept (--if-missing)")
            continue
        started = time.perf_counter()

        def progress(step: str, entry: str = entry, i: int = i, started: float = started) -> None:
            _progress(f"[{i}/{total}] {entry}: {step} ({time.perf_counter() - started:.1f}s)")

        result = export(
            given,
            repo,
            opset=args.opset,
            checkpoint=args.checkpoint,
            fp16=args.fp16,
            uint8_input=args.uint8_input,
            options=options,
            entry_name=args.name,
            progress=progress,
        )
        _progress(f"[{i}/{total}] {entry}: written to {result.path} in {result.seconds:.1f}s")
        results.append(result)
    _print_repository(repo, args.json)
    return 0


def _print_repository(repo: Path, as_json: bool) -> None:
    """The repository as the server will read it: good entries, then broken ones with why."""
    from server.repository import RepositoryError, scan

    try:
        configs, broken = scan(repo)
    except RepositoryError as exc:
        raise CliError(str(exc)) from None
    entries: list[dict[str, Any]] = [
        {
            "name": c.name,
            "architecture": c.architecture,
            "version": c.version,
            "input": list(c.inputs[0].shape),
            "weight_layers": c.weight_layers,
            "parameters": c.parameters,
            "macs": c.macs,
            "trained": c.trained,
            "onnx_bytes": c.onnx_path.stat().st_size,
        }
        for c in configs
    ]
    if as_json:
        print(json.dumps({"models": entries, "broken": broken}, indent=2))
        return
    print(f"model repository {repo}/: {len(entries)} entries" + (f", {len(broken)} broken" if broken else ""))
    print(
        render_table(
            ["model", "version", "input", "weight layers", "parameters", "MACs", "weights", "ONNX size"],
            [
                [
                    e["name"],
                    e["version"],
                    "x".join(map(str, e["input"])),
                    e["weight_layers"],
                    human(e["parameters"]),
                    human(e["macs"]),
                    "trained" if e["trained"] else "random",
                    human(e["onnx_bytes"]) + "B",
                ]
                for e in entries
            ],
            align="lrlrrrlr",
        )
    )
    for name, reason in sorted(broken.items()):
        print(f"broken: {name}: {reason}")


def cmd_repo(args: argparse.Namespace) -> int:
    _print_repository(Path(args.repo), args.json)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import run
    from server.settings import Settings

    return run(Settings.from_args(args))


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="every architecture with input, weight layers, parameters and MACs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="the per-layer table of one architecture")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--all", action="store_true", help="also list ReLU, batch norm, dropout and other in-place layers")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="builder option, e.g. k=256")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("export", help="export architectures to the model repository, checked against PyTorch")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--repo", default="exported", help="model repository folder (default: exported)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument("--checkpoint", metavar="FILE", help="a state_dict to load (torch.load weights_only=True)")
    p.add_argument("--fp16", action="store_true", help="compute in float16 (inputs and outputs stay float32)")
    p.add_argument("--uint8-input", action="store_true",
                   help="take uint8 pixels NHWC and normalise them in the graph (image models)")  # fmt: skip
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="builder option, e.g. k=256")
    p.add_argument("--name", help="repository entry name (default: the architecture's name)")
    p.add_argument("--if-missing", action="store_true", help="skip entries that already exist")
    p.add_argument("--json", action="store_true", help="print the repository listing as JSON")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="run the gRPC inference server over a model repository")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    # The clients of a running server: each module adds its flags and runs as its main().
    from server import bench_client, classify_client, compare_client, gtp_client, policy_client

    for name, module, what in (
        ("classify", classify_client, "classify PNG or JPEG files with a model of a running server"),
        ("policy", policy_client, "Go move probabilities for a position (SGF at a move, or a text board)"),
        ("gtp", gtp_client, "a GTP engine on stdin/stdout that plays the server's policy network"),
        ("bench", bench_client, "load one model of a running server; throughput, latency, queue and compute"),
        ("compare", compare_client, "latency against depth and MACs for several models: table, chart, verdicts"),
    ):
        p = sub.add_parser(name, help=what)
        module.add_arguments(p)
        p.set_defaults(func=module.main)

    p = sub.add_parser("repo", help="list the entries of a model repository")
    p.add_argument("--repo", default="exported", help="model repository folder (default: exported)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_repo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from builders import UnknownArchitectureError, UnknownOptionError
    from builders.export import ExportError
    from builders.weights import CheckpointError
    from server.clients import ClientError

    args = build_parser().parse_args(argv)
    handled: tuple[type[BaseException], ...] = (
        CliError,
        UnknownArchitectureError,
        UnknownOptionError,
        ExportError,
        CheckpointError,
        SettingsError,
        ClientError,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except handled as exc:
        print(f"cnnserve {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cnnserve {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cnnserve policy ... | head`, a GTP controller that quit): stop
        # quietly, as Unix tools do, and keep Python from complaining again while it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
