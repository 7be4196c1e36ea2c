"""The ``cnnserve`` command line: one script, one subcommand per job. This module only parses
and dispatches; each subcommand lives with the package it belongs to (:data:`COMMANDS`).

Only the chosen subcommand's module is imported: ``cnnserve serve`` never imports torch (the
builders' commands) nor a client, and ``cnnserve bench`` never imports the server.

Subcommands that list things take ``--json``; errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cnnserve import __version__
from cnnserve.errors import CommandError


@dataclass(frozen=True)
class Command:
    name: str
    arguments: str  # "module:function" that adds the subcommand's flags to its parser
    run: str  # "module:function" that runs it with the parsed arguments, returning the exit status
    help: str
    extra: str = ""  # the optional dependencies it needs beyond a serving install (pyproject's extras)


COMMANDS: tuple[Command, ...] = (
    Command("models", "cnnserve.builders.commands:add_models_arguments", "cnnserve.builders.commands:models",
            "every architecture with input, weight layers, parameters and MACs", extra="export"),
    Command("summary", "cnnserve.builders.commands:add_summary_arguments", "cnnserve.builders.commands:summary",
            "the per-layer table of one architecture", extra="export"),
    Command("export", "cnnserve.builders.commands:add_export_arguments", "cnnserve.builders.commands:export",
            "export architectures to the model repository, checked against PyTorch", extra="export"),
    Command("serve", "cnnserve.server.settings:add_arguments", "cnnserve.server.command:main",
            "run the gRPC inference server over a model repository"),
    Command("classify", "cnnserve.client.classify:add_arguments", "cnnserve.client.classify:main",
            "classify PNG or JPEG files with a model of a running server"),
    Command("policy", "cnnserve.client.policy:add_arguments", "cnnserve.client.policy:main",
            "Go move probabilities for a position (SGF at a move, or a text board)"),
    Command("gtp", "cnnserve.client.gtp:add_arguments", "cnnserve.client.gtp:main",
            "a GTP engine on stdin/stdout that plays the server's policy network"),
    Command("go-data", "cnnserve.go.selfplay:add_arguments", "cnnserve.go.selfplay:main",
            "games of GNU Go against itself as SGF, to train the policy network on"),
    Command("go-train", "cnnserve.builders.go_training.command:add_arguments",
            "cnnserve.builders.go_training.command:main",
            "train the policy network on SGF games: checkpoint, held-out accuracy, chart", extra="export"),
    Command("match", "cnnserve.client.match:add_arguments", "cnnserve.client.match:main",
            "games between cnnserve's GTP engine and another GTP engine: records, wins, Elo"),
    Command("bench", "cnnserve.client.bench:add_arguments", "cnnserve.client.bench:main",
            "load one model of a running server; throughput, latency, queue and compute"),
    Command("compare", "cnnserve.client.compare:add_arguments", "cnnserve.client.compare:main",
            "latency against depth and MACs for several models: table, chart, verdicts"),
    Command("tune", "cnnserve.client.tune.command:add_arguments", "cnnserve.client.tune.command:main",
            "each model's best batching, instances, workers and threads under a latency budget, measured",
            extra="compare"),
    Command("repo", "cnnserve.repo_listing:add_arguments", "cnnserve.repo_listing:main",
            "list the entries of a model repository"),
)  # fmt: skip


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser, with the flags of the subcommand ``argv`` names (its first word) only."""
    parser = argparse.ArgumentParser(
        prog="cnnserve", description="Serve and compare the classic convolutional networks of the course notes."
    )
    parser.add_argument("--version", action="version", version=f"cnnserve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        if command.name == chosen:
            _resolve(command.arguments)(p)
            p.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except ModuleNotFoundError as exc:
        # A serving-only install (`pip install cnnserve`) has no torch: say which extra brings it.
        command = next((c for c in COMMANDS if c.name == _chosen(argv)), None)
        if command is None or not command.extra:
            raise
        print(f"cnnserve {command.name}: error: it needs {exc.name}, which is not installed: "
              f"pip install 'cnnserve[{command.extra}]'", file=sys.stderr)  # fmt: skip
        return 1
    try:
        status: int = _resolve(args.run)(args)
        return status
    except CommandError as exc:
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
