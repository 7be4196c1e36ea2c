"""deploy/kserve: cnnserve's ClusterServingRuntime, the example InferenceService and the volume of
models it reads. KServe's CRDs are not published on PyPI or npm (its Python SDK carries generated
models without the CRDs' schemas), so KServe's own fields are checked one by one here, each with
where the rule comes from; the parts that are Kubernetes types (containers, pod fields) are
validated against Kubernetes' schemas. Then the runtime's container is run for real, as KServe
would run it: args and environment from the manifest, one exported entry as /mnt/models."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as tc
from deployfiles import (
    KSERVE,
    ROOT,
    as_pod,
    env_of,
    load_all,
    load_compose,
    longest_stop,
    named,
    server_settings,
    the,
    validate_kubernetes,
)
from harness import ServerProcess, wait_ready

RUNTIME_FILE = KSERVE / "cluster-serving-runtime.yaml"
SERVICE_FILE = KSERVE / "inference-service.yaml"
MODELS_FILE = KSERVE / "models-pvc.yaml"

# KServe's API as of v0.21: its Go types (pkg/apis/serving/v1alpha1/servingruntime_types.go,
# v1beta1/predictor.go, v1beta1/component.go), as the attribute maps of its Python SDK (kserve 0.21.0
# on PyPI, kserve/models/v1alpha1_serving_runtime_spec.py, v1beta1_model_spec.py,
# v1beta1_component_extension_spec.py) list them.
SERVING_RUNTIME_SPEC = {
    "affinity", "annotations", "builtInAdapter", "containers", "disabled", "grpcDataEndpoint", "grpcEndpoint",
    "hostIPC", "httpDataEndpoint", "imagePullSecrets", "labels", "multiModel", "nodeSelector", "protocolVersions",
    "replicas", "resourceClaims", "schedulerName", "storageHelper", "supportedModelFormats", "tolerations", "volumes",
    "workerSpec",
}  # fmt: skip
RUNTIME_POD_FIELDS = {"affinity", "containers", "hostIPC", "imagePullSecrets", "nodeSelector", "resourceClaims",
                      "schedulerName", "tolerations", "volumes"}  # fmt: skip
SUPPORTED_MODEL_FORMAT = {"name", "version", "autoSelect", "priority"}
# InferenceServiceProtocol (pkg/constants): v1, v2, grpc-v1, grpc-v2.
PROTOCOLS = {"v1", "v2", "grpc-v1", "grpc-v2"}
# ModelSpec = the KServe fields below plus a corev1.Container's (its name optional: KServe names it).
MODEL_SPEC_OWN = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage",
                  "confidential"}  # fmt: skip
# ComponentExtensionSpec, beside the PodSpec fields a predictor also takes.
COMPONENT_EXTENSION = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType",
                       "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels",
                       "annotations", "deploymentStrategy", "autoScaling"}  # fmt: skip
# pkg/agent/storage: the schemes the storage initializer (or, for pvc://, a volume mount) serves.
STORAGE_SCHEMES = {"gs", "s3", "pvc", "hdfs", "webhdfs", "http", "https", "oci", "hf"}
MODEL_MOUNT = "/mnt/models"  # constants.DefaultModelLocalMountPath
CONTAINER_NAME = "kserve-container"  # constants.InferenceServiceContainerName
KUBERNETES_DEFAULT_GRACE = 30  # a pod's terminationGracePeriodSeconds when its spec says none


@pytest.fixture(scope="module")
def runtime() -> dict[str, Any]:
    (resource,) = load_all(RUNTIME_FILE)
    return resource


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    (resource,) = load_all(SERVICE_FILE)
    return resource


def kserve_container(runtime: dict[str, Any]) -> dict[str, Any]:
    return runtime["spec"]["containers"][0]


def test_the_runtime_has_kserves_required_fields(runtime: dict[str, Any]) -> None:
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert runtime["kind"] == "ClusterServingRuntime"
    assert "namespace" not in runtime["metadata"]  # cluster-scoped
    spec = runtime["spec"]
    assert set(spec) <= SERVING_RUNTIME_SPEC, set(spec) - SERVING_RUNTIME_SPEC
    # The CRD's schema: spec.containers is required; each container's name too.
    assert spec["containers"] and all(c.get("name") for c in spec["containers"])
    # KServe finds the model server by this name (and merges the InferenceService's fields into it).
    assert kserve_container(runtime)["name"] == CONTAINER_NAME
    formats = spec["supportedModelFormats"]
    for model_format in formats:
        assert set(model_format) <= SUPPORTED_MODEL_FORMAT and model_format["name"], model_format
        assert isinstance(model_format.get("version", ""), str)
        # KServe's ServingRuntime webhook: a priority only with autoSelect, and at least 1.
        if "priority" in model_format:
            assert model_format.get("autoSelect") is True and model_format["priority"] >= 1, model_format
    assert "onnx" in {f["name"] for f in formats}
    # Triton's runtime auto-selects onnx at priority 1; KServe refuses two runtimes that auto-select
    # one format at one priority, so cnnserve auto-selects only its own format.
    assert not named(formats, "onnx").get("autoSelect", False)
    assert set(spec["protocolVersions"]) <= PROTOCOLS and "grpc-v2" in spec["protocolVersions"]
    pod = {key: spec[key] for key in RUNTIME_POD_FIELDS & set(spec)}
    validate_kubernetes(as_pod("runtime", pod))


def test_the_runtime_exposes_one_grpc_port_named_h2c_and_the_metrics_annotations(runtime: dict[str, Any]) -> None:
    """KServe routes one port to the model server (Knative takes one container port); gRPC's
    must be named h2c, which KServe and Knative read as HTTP/2 cleartext (KServe's docs, "Inference
    with gRPC endpoint"). That port, the readiness probe's and the Prometheus annotations are the
    ports the server takes with this environment."""
    container = kserve_container(runtime)
    settings = server_settings(container, Name="resnet50")
    (port,) = container["ports"]
    assert port["name"] == "h2c" and port["containerPort"] == settings.grpc_port
    # A runtime that also offered "v2" (REST) would get HTTP/1.1 sent to this port.
    assert runtime["spec"]["protocolVersions"] == ["grpc-v2"]
    probe = container["readinessProbe"]
    assert probe["grpc"]["port"] == settings.grpc_port and probe["grpc"].get("service", "") == ""
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(settings.metrics_port)
    assert annotations["prometheus.kserve.io/path"] == "/metrics"


def test_the_runtime_serves_the_mounted_entry_under_the_inferenceservices_name(
    runtime: dict[str, Any], isvc: dict[str, Any]
) -> None:
    container = kserve_container(runtime)
    name = isvc["metadata"]["name"]
    settings = server_settings(container, Name=name)
    # The entry point (deploy/serve.sh) checks CNNSERVE_REPO, the server reads it: both /mnt/models.
    assert env_of(container)["CNNSERVE_REPO"] == settings.repo == MODEL_MOUNT
    assert "--model-name={{.Name}}" in container["args"] and settings.model_name == name
    assert container["image"] == load_compose()["services"]["cnnserve"]["image"]
    # One process, threads sized to the CPU request (the container sees every core of its node).
    assert settings.workers == 1
    cores = int(container["resources"]["requests"]["cpu"])
    assert 0 < settings.intra_op_threads <= cores and 0 < settings.decode_threads <= cores
    # No terminationGracePeriodSeconds in either file (Knative refuses it; a raw deployment's pod
    # gets Kubernetes' default): draining must fit in that.
    assert "terminationGracePeriodSeconds" not in isvc["spec"]["predictor"]
    assert "CNNSERVE_GRACE_SECONDS" in env_of(container)
    assert longest_stop(settings) + 5 <= KUBERNETES_DEFAULT_GRACE


def test_the_inferenceservice_names_the_runtime_a_format_and_a_protocol_it_supports(
    runtime: dict[str, Any], isvc: dict[str, Any]
) -> None:
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    # The CRD: spec.predictor is required; so is predictor.model.modelFormat.name.
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {(f["name"], f.get("version")) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    # The model's name in the Open Inference Protocol is the InferenceService's: a server name.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", isvc["metadata"]["name"])
    scheme = model["storageUri"].partition("://")[0]
    assert scheme in STORAGE_SCHEMES, model["storageUri"]
    # Whatever is not KServe's own is a container's or a pod's field, and must be valid as one.
    container = {key: value for key, value in model.items() if key not in MODEL_SPEC_OWN}
    pod = {key: value for key, value in predictor.items() if key not in COMPONENT_EXTENSION | {"model"}}
    validate_kubernetes(as_pod("predictor", {**pod, "containers": [{"name": CONTAINER_NAME, **container}]}))


def test_the_models_volume_holds_the_entry_the_inferenceservice_names(isvc: dict[str, Any]) -> None:
    """pvc://CLAIM/PATH: KServe mounts PATH of the claim at /mnt/models; the Job fills the claim
    with the export image (deploy/export.sh: one folder per entry under CNNSERVE_REPO)."""
    resources = load_all(MODELS_FILE)
    for resource in resources:
        validate_kubernetes(resource)
    claim = the(resources, "PersistentVolumeClaim")
    job = the(resources, "Job")["spec"]["template"]["spec"]
    (export,) = job["containers"]
    assert export["image"] == load_compose()["services"]["export"]["image"]
    (mount,) = export["volumeMounts"]
    assert mount["mountPath"] == env_of(export)["CNNSERVE_REPO"]
    assert named(job["volumes"], mount["name"])["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    match = re.fullmatch(r"pvc://([^/]+)/([^/]+)", isvc["spec"]["predictor"]["model"]["storageUri"])
    assert match is not None
    assert match[1] == claim["metadata"]["name"]
    assert match[2] in env_of(export)["CNNSERVE_EXPORT"].split()


def test_the_validation_catches_a_bad_container(runtime: dict[str, Any]) -> None:
    container = copy.deepcopy(kserve_container(runtime))
    container["ports"][0]["containerPort"] = "8001"
    with pytest.raises(AssertionError, match="is not of type 'integer'"):
        validate_kubernetes(as_pod("runtime", {"containers": [container]}))


def test_the_runtime_container_serves_one_entry_as_kserve_mounts_it(
    runtime: dict[str, Any], isvc: dict[str, Any], exported_repo: Path, tmp_path: Path
) -> None:
    """The image's entry point (deploy/serve.sh) run with the runtime's args and environment, as
    KServe runs the container, over what KServe puts in /mnt/models (one entry's folder, here a
    small exported classifier): it serves that entry under the InferenceService's name, and gRPC
    health says SERVING once it is loaded. Only the ports differ (free ones), and the folder."""
    from grpc_health.v1 import health_pb2

    container = kserve_container(runtime)
    name = isvc["metadata"]["name"]
    mounted = tmp_path / "mnt" / "models"
    shutil.copytree(exported_repo / "cifar_resnet20", mounted)
    args = [arg.replace("{{.Name}}", name) for arg in container["args"]]
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1",
        # The venv's cnnserve on PATH, as the image's is.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **env_of(container),
        "CNNSERVE_REPO": str(mounted), "CNNSERVE_HOST": "127.0.0.1",
        "CNNSERVE_GRPC_PORT": "0", "CNNSERVE_HTTP_PORT": "0", "CNNSERVE_METRICS_PORT": "0",
    }  # fmt: skip
    process = subprocess.Popen(["sh", str(ROOT / "deploy" / "serve.sh"), *args], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    server = ServerProcess(process)
    try:
        server.wait_listening()
        wait_ready(server.grpc_address)
        with tc.InferenceServerClient(server.grpc_address) as client:
            assert client.is_model_ready(name)
            assert [m["name"] for m in client.get_model_repository_index(as_json=True)["models"]] == [name]
        assert health_status(server.grpc_address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.terminate() == 0, server.output


def health_status(address: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    return int(reply.status)
