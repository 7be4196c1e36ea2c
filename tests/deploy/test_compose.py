"""docker-compose.yml and the Dockerfile, checked statically: Docker does not run here."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from deployfiles import ROOT, load_compose, mounts


def test_services_ports_and_volumes() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(services) == {"cnnserve", "cnnserve-gpu", "prometheus", "grafana"}
    assert {"8001:8001", "8002:8002"} <= set(services["cnnserve"]["ports"])
    assert "9090:9090" in services["prometheus"]["ports"] and "3000:3000" in services["grafana"]["ports"]
    # Both servers keep their exported models in a named volume.
    for name, volume in (("cnnserve", "models"), ("cnnserve-gpu", "models-gpu")):
        assert mounts(services[name])[volume] == "/models"
    declared = set(compose["volumes"])
    for service in services.values():
        for source in mounts(service):
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"bind mount {source} does not exist"
            else:
                assert source in declared, f"named volume {source} is not declared"


def test_the_cpu_server_is_the_default_and_the_gpu_one_a_profile_with_a_reserved_gpu() -> None:
    services = load_compose()["services"]
    assert "profiles" not in services["cnnserve"]
    assert services["cnnserve"]["environment"]["CNNSERVE_DEVICE"] == "cpu"
    gpu = services["cnnserve-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["environment"]["CNNSERVE_DEVICE"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["BASE_IMAGE"].startswith("nvidia/cuda:")
    # Both may run at once: their host ports differ.
    assert not set(gpu["ports"]) & set(services["cnnserve"]["ports"])


def test_prometheus_scrapes_both_servers_on_their_metrics_port() -> None:
    services = load_compose()["services"]
    config_path = mounts(services["prometheus"])
    assert config_path["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == ["cnnserve:8002", "cnnserve-gpu:8002"]
    assert all(t.split(":")[0] in services for t in targets)


def test_the_dockerfile_copies_what_exists_and_runs_the_entry_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [src for line in dockerfile.splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]]
    assert copied and all((ROOT / src).exists() for src in copied), copied
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["cnnserve-serve"]' in dockerfile
    assert "EXPOSE 8001 8002" in dockerfile
    # The entry script is valid POSIX shell and exports before it serves.
    script = ROOT / "deploy" / "serve.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert text.index("cnnserve export") < text.index("exec cnnserve serve")


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/prometheus/prometheus.yml",
                                  "deploy/grafana/provisioning/datasources/prometheus.yml",
                                  "deploy/grafana/provisioning/dashboards/cnnserve.yml"])  # fmt: skip
def test_yaml_files_parse(path: str) -> None:
    assert isinstance(yaml.safe_load((ROOT / path).read_text()), dict)
