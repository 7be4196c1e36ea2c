"""docker-compose.yml and the Dockerfile, checked statically: Docker does not run here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deployfiles import ROOT, load_compose, mounts
from harness import copy_repository, serving, start_server

from cnnserve.server.settings import Settings
from cnnserve.server.tracing.config import from_entries


def test_services_ports_and_volumes() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(services) == {"export", "cnnserve", "cnnserve-gpu", "nginx", "prometheus", "grafana", "jaeger"}
    # gRPC and HTTP/REST on Triton's ports through nginx; the CPU replicas publish none.
    assert set(services["nginx"]["ports"]) == {"8000:8000", "8001:8001"}
    assert "ports" not in services["cnnserve"] and {"8000", "8001", "8002"} <= set(services["cnnserve"]["expose"])
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
    # Everything may run at once: no host port is published twice.
    published = [port.split(":")[0] for service in services.values() for port in service.get("ports", [])]
    assert len(published) == len(set(published)), published


def _interpolated(value: str, environ: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}``, as ``docker compose`` fills it in from the shell."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: environ.get(m[1]) or m[2], value)


def test_the_servers_trace_towards_jaeger_in_the_tracing_profile() -> None:
    services = load_compose()["services"]
    jaeger = services["jaeger"]
    assert jaeger["profiles"] == ["tracing"] and "16686:16686" in jaeger["ports"] and "4318" in jaeger["expose"]
    for name in ("cnnserve", "cnnserve-gpu"):
        environment = services[name]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://jaeger:4318/v1/traces"
        # Off unless the shell says otherwise; on, as the file's header shows it.
        for shell, level, rate in (({}, "OFF", 1000), ({"CNNSERVE_TRACE_CONFIG": "level=TIMESTAMPS;rate=100"},
                                                       "TIMESTAMPS", 100)):  # fmt: skip
            env = {k: _interpolated(str(v), shell) for k, v in environment.items()}
            settings = Settings.from_env(env)
            traces = from_entries(settings.trace_config)
            assert (traces.mode, traces.level, traces.rate) == ("opentelemetry", level, rate)
    assert services["cnnserve-gpu"]["environment"]["CNNSERVE_DEVICE"] == "cuda"


def test_the_cpu_server_scales_behind_nginx() -> None:
    """`docker compose up --scale cnnserve=3`: nothing pins the replicas to one container or one
    host port, and nginx, on the shipped configuration, sends to the service name's every address."""
    services = load_compose()["services"]
    cnnserve, nginx = services["cnnserve"], services["nginx"]
    assert "container_name" not in cnnserve and "ports" not in cnnserve
    assert nginx["depends_on"]["cnnserve"]["condition"] == "service_healthy"
    # `resolve` in an upstream needs OSS nginx 1.27.3 or later.
    image, _, tag = nginx["image"].partition(":")
    assert image == "nginx" and tuple(int(n) for n in tag.split(".")[:2]) >= (1, 28), nginx["image"]
    assert mounts(nginx) == {"./deploy/nginx/cnnserve.conf": "/etc/nginx/conf.d/default.conf"}
    config = (ROOT / "deploy" / "nginx" / "cnnserve.conf").read_text()
    upstreams = re.findall(r"^\s*server (\S+?):(\d+) resolve\b", config, re.MULTILINE)
    assert upstreams == [("cnnserve", "8001"), ("cnnserve", "8000")]
    assert re.search(r"^resolver 127\.0\.0\.11\b", config, re.MULTILINE)  # Docker's DNS
    listens = re.findall(r"^\s*listen (\d+)", config, re.MULTILINE)
    assert sorted(listens) == sorted(p.split(":")[1] for p in nginx["ports"])


def test_prometheus_scrapes_every_replica_of_both_servers_on_their_metrics_port() -> None:
    services = load_compose()["services"]
    config_path = mounts(services["prometheus"])
    assert config_path["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["cnnserve", "cnnserve-gpu"] and discovery["port"] == 8002
    assert discovery["type"] == "A" and all(name in services for name in discovery["names"])
    variants = {rule["regex"]: rule["replacement"] for rule in job["relabel_configs"]}
    assert variants == {"cnnserve": "cpu", "cnnserve-gpu": "cuda"}


def _stages(dockerfile: str) -> dict[str, str]:
    """Each build stage's instructions (comments left out), by its name (``FROM ... AS name``)."""
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#"))
    parts = re.split(r"^FROM \S+ AS (\w+)$", instructions, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_dockerfile_copies_what_exists_and_runs_the_entry_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    # From the build context, not from another stage (COPY --from=wheel).
    copied = [src for words in copies if not words[0].startswith("--from=") for src in words]
    assert copied and all((ROOT / src).exists() for src in copied), copied
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)
    stages = _stages(dockerfile)
    # The server is the last stage (what a plain `docker build` makes), and it installs no torch:
    # cnnserve's wheel, built (C extension compiled) in the wheel stage, the only one with a
    # compiler; the export stage adds torch and the export extra.
    assert list(stages) == ["base", "wheel", "export", "serve"]
    serve, export, wheel = stages["serve"], stages["export"], stages["wheel"].replace("\\\n", "")
    assert "pip wheel --no-deps --wheel-dir /wheels ." in wheel and "gcc" in wheel
    assert all("gcc" not in stages[name] for name in ("base", "export", "serve"))
    for stage in (serve, export):
        assert "COPY --from=wheel /wheels /wheels" in stage
    assert "pip install /wheels/cnnserve-*.whl\n" in serve and "torch" not in serve and "torch" not in stages["base"]
    assert "torch==" in export and '"$(ls /wheels/cnnserve-*.whl)[export]"' in export
    assert 'ENTRYPOINT ["cnnserve-serve"]' in serve and "EXPOSE 8000 8001 8002" in serve
    assert 'ENTRYPOINT ["cnnserve-export"]' in export
    # The entry scripts are valid POSIX shell; the server's serves, the exporter's exports.
    for name in ("serve.sh", "export.sh"):
        assert subprocess.run(["sh", "-n", str(ROOT / "deploy" / name)], check=False).returncode == 0
    assert "exec cnnserve serve" in (ROOT / "deploy" / "serve.sh").read_text()
    assert "cnnserve export" not in (ROOT / "deploy" / "serve.sh").read_text()
    assert "cnnserve export --repo" in (ROOT / "deploy" / "export.sh").read_text()


def test_the_images_run_as_a_non_root_user_that_owns_the_model_folders() -> None:
    stages = _stages((ROOT / "Dockerfile").read_text())
    for name in ("serve", "export"):
        users = re.findall(r"^USER (\S+)$", stages[name], re.MULTILINE)
        # The last USER line counts; numeric (uid:gid) so that Kubernetes' runAsNonRoot can check it.
        assert users, f"the {name} stage sets no USER: it would run as root"
        uid, _, gid = users[-1].partition(":")
        assert uid.isdigit() and int(uid) == 10001 and (not gid or (gid.isdigit() and int(gid) != 0)), users
        # The installs run as root, before it.
        assert "RUN " not in stages[name].partition(f"USER {users[-1]}")[2]
    base = stages["base"].replace("\\\n", "")
    assert re.search(r"useradd --system --uid 10001 --gid 10001 .*cnnserve", base)
    assert "chown 10001:10001 /models" in base  # a fresh volume there is the exporter's to write
    assert "chown 10001:10001 /models-gpu" in stages["export"]  # compose's second volume
    # Everything the server writes goes under /tmp, so `docker run --read-only --tmpfs /tmp` works.
    assert "HOME=/tmp" in base and "PYTHONDONTWRITEBYTECODE=1" in stages["serve"]


def healthcheck_command() -> list[str]:
    """The serving image's HEALTHCHECK, its exec form as Docker runs it."""
    serve = _stages((ROOT / "Dockerfile").read_text())["serve"].replace("\\\n", "")
    (line,) = [line for line in serve.splitlines() if line.startswith("HEALTHCHECK ")]
    command = json.loads(line.partition(" CMD ")[2])
    assert isinstance(command, list) and all(isinstance(word, str) for word in command)
    return [sys.executable if word == "python" else word for word in command]  # the image's python is on PATH


def test_the_images_healthcheck_is_http_readiness(small_repo: Path, repo_with_broken: Path, tmp_path: Path) -> None:
    """The HEALTHCHECK run as Docker would, against real servers: healthy when ready; not when no
    model could load, nor when nothing listens."""
    command = healthcheck_command()

    def check(http_address: str) -> int:
        env = {**os.environ, "CNNSERVE_HTTP_PORT": http_address.rpartition(":")[2]}
        return subprocess.run(command, env=env, capture_output=True, timeout=30, check=False).returncode

    with serving(small_repo, "--model", "lenet5") as ready:
        assert check(ready.http_address) == 0
    shutil.copytree(repo_with_broken / "broken", tmp_path / "broken")
    unready = start_server(tmp_path)
    try:
        assert check(unready.http_address) != 0  # listening, answering 400: no model is ready
        assert unready.process.poll() is None, unready.output
    finally:
        unready.terminate()
    assert check(ready.http_address) != 0  # stopped: nothing listens there any more


def test_the_servers_start_after_the_export_fills_their_volumes() -> None:
    services = load_compose()["services"]
    export = services["export"]
    assert export["build"]["target"] == "export"
    assert mounts(export) == {"models": "/models", "models-gpu": "/models-gpu"}
    assert export["command"] == ["/models-gpu"]  # export.sh copies the entries there
    for name in ("cnnserve", "cnnserve-gpu"):
        assert services[name]["build"]["target"] == "serve"
        assert services[name]["depends_on"]["export"]["condition"] == "service_completed_successfully"


def test_the_serving_entry_script_refuses_an_empty_repository(tmp_path: Path) -> None:
    run = subprocess.run(["sh", str(ROOT / "deploy" / "serve.sh")], env={**os.environ, "CNNSERVE_REPO": str(tmp_path)},
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert run.returncode == 1
    assert f"the model repository {tmp_path} is empty; export models into it first" in run.stderr


def test_the_export_entry_script_keeps_what_is_there_and_copies_to_the_other_volumes(
    exported_repo: Path, tmp_path: Path
) -> None:
    repo = copy_repository(exported_repo, tmp_path / "models")
    before = {p: p.stat().st_mtime_ns for p in repo.rglob("*")}
    # The venv's `cnnserve` on PATH, as in the export image.
    env = {**os.environ, "CNNSERVE_REPO": str(repo), "CNNSERVE_EXPORT": "cifar_resnet20 alphago_policy",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    run = subprocess.run(["sh", str(ROOT / "deploy" / "export.sh"), str(tmp_path / "gpu")], env=env,
                         capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "cifar_resnet20: already in" in run.stderr
    assert {p: p.stat().st_mtime_ns for p in repo.rglob("*")} == before  # nothing re-exported
    copied = sorted(p.name for p in (tmp_path / "gpu").iterdir())
    assert copied == ["alphago_policy", "cifar_resnet20"]
    assert (tmp_path / "gpu" / "cifar_resnet20" / "1" / "model.onnx").read_bytes() == (
        repo / "cifar_resnet20" / "1" / "model.onnx"
    ).read_bytes()


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/prometheus/prometheus.yml",
                                  "deploy/grafana/provisioning/datasources/prometheus.yml",
                                  "deploy/grafana/provisioning/dashboards/cnnserve.yml"])  # fmt: skip
def test_yaml_files_parse(path: str) -> None:
    assert isinstance(yaml.safe_load((ROOT / path).read_text()), dict)
