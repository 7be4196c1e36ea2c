"""The deployment files as data, for the tests: docker-compose.yml (Docker does not run on these
machines) and the Grafana dashboard's PromQL, made runnable by Prometheus itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """source -> target of a service's short-syntax volumes (``src:dst`` or ``src:dst:ro``)."""
    found = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        assert len(parts) in (2, 3), volume
        found[parts[0]] = parts[1]
    return found


DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "cnnserve.json"


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query target of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    return [v["query"]["query"] for v in dashboard["templating"]["list"]]


def for_prometheus(expr: str, model: str) -> str:
    """The expression as Grafana would send it with ``model`` chosen and every server selected."""
    expr = expr.replace('model=~"$model"', f'model=~"{re.escape(model)}"')
    expr = expr.replace('instance=~"$instance"', 'instance=~".*"')
    expr = expr.replace("$__rate_interval", "30s").replace("$__range", "5m")
    if "$" in expr:
        raise ValueError(f"a Grafana variable is left in {expr!r}")
    return expr
