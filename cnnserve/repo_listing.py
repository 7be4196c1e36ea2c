"""``cnnserve repo``: the entries of a model repository as the server will read them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnserve.errors import CommandError
from cnnserve.repository import RepositoryError, scan, versions
from cnnserve.tables import human, render_table


def print_repository(repo: Path, as_json: bool) -> None:
    """The repository as the server will read it: good entries (every version folder, the one
    served in brackets), then broken ones with why."""
    try:
        configs, broken = scan(repo)
    except RepositoryError as exc:
        raise CommandError(str(exc)) from None
    entries: list[dict[str, Any]] = [
        {
            "name": c.name,
            "architecture": c.architecture,
            "version": c.version,
            "versions": versions(c.onnx_path.parent.parent),
            "input": list(c.inputs[0].shape),
            "weight_layers": c.weight_layers,
            "parameters": c.parameters,
            "macs": c.macs,
            "trained": c.trained,
            "weights": c.weights_kind,
            "weights_source": c.weights_source,
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
            ["model", "versions", "input", "weight layers", "parameters", "MACs", "weights", "ONNX size"],
            [
                [
                    e["name"],
                    ",".join(f"[{v}]" if v == e["version"] else str(v) for v in e["versions"]),
                    "x".join(map(str, e["input"])),
                    e["weight_layers"],
                    human(e["parameters"]),
                    human(e["macs"]),
                    e["weights"],
                    human(e["onnx_bytes"]) + "B",
                ]
                for e in entries
            ],
            align="lrlrrrlr",
        )
    )
    for name, reason in sorted(broken.items()):
        print(f"broken: {name}: {reason}")


def main(args: argparse.Namespace) -> int:
    print_repository(Path(args.repo), args.json)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="exported", help="model repository folder (default: exported)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
