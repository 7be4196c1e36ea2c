"""A real Prometheus (Debian's package, which `make test` installs) scrapes a real server under
load with the shipped scrape configuration, and every expression of the Grafana dashboard
returns numbers for the loaded model through Prometheus's HTTP API."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from deployfiles import ROOT, expressions, for_prometheus, load_dashboard
from harness import Served, http_call
from inprocess import InProcessServer, in_process

from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc

CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
MODEL = "cifar_resnet20"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs Debian's prometheus package (make system-packages)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_promtool_accepts_the_shipped_configuration() -> None:
    done = subprocess.run([binary("promtool"), "check", "config", str(CONFIG)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def server(exported_repo: Path) -> Iterator[InProcessServer]:
    with in_process(exported_repo, models=(MODEL,)) as served:
        yield served


@pytest.fixture(scope="module")
def prometheus(server: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus on loopback with the shipped configuration, its target pointed at the server."""
    folder = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"  # seconds of load are enough for rate() windows
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [server.metrics_address], "labels": {"variant": "cpu"}}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary("prometheus"), f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address={address}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"prometheus did not get ready:\n{(folder / 'prometheus.log').read_text()}")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def query(prometheus: str, expr: str) -> list[dict]:
    url = f"http://{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def numbers_for(result: list[dict], model: str) -> list[float]:
    """The finite values of a vector result that belong to ``model`` (or name no model)."""
    return [float(s["value"][1]) for s in result
            if s["metric"].get("model", model) == model and math.isfinite(float(s["value"][1]))]  # fmt: skip


def load(address: str, stop: threading.Event) -> None:
    """Good requests without pause, and every tenth one bad, so that the errors panel has data."""
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    good = pb.ModelInferRequest(model_name=MODEL)
    good.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
    good.raw_input_contents.append(x.tobytes())
    bad = pb.ModelInferRequest()
    bad.CopyFrom(good)
    bad.inputs[0].name = "wrong"
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                stub.ModelInfer(bad if i % 10 == 0 else good, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert i % 10 == 0


def load_http(server: Served, stop: threading.Event) -> None:
    """The same good request over HTTP, so that the panels by protocol have both."""
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode()  # fmt: skip
    while not stop.is_set():
        status, reply = http_call(server, "POST", f"/v2/models/{MODEL}/infer", body)
        assert status == 200, reply


def test_every_dashboard_expression_returns_numbers_for_the_loaded_model(server: Served, prometheus: str) -> None:
    stop = threading.Event()
    loaders = [threading.Thread(target=load, args=(server.grpc_address, stop)) for _ in range(3)]
    loaders.append(threading.Thread(target=load_http, args=(server, stop)))
    for thread in loaders:
        thread.start()
    pending = {f"{title}: {expr}": for_prometheus(expr, MODEL) for title, expr in expressions(load_dashboard())}
    answers: dict[str, list[float]] = {}
    try:
        deadline = time.monotonic() + 90
        while pending and time.monotonic() < deadline:
            for name, expr in list(pending.items()):
                values = numbers_for(query(prometheus, expr), MODEL)
                if values:
                    answers[name] = values
                    del pending[name]
            time.sleep(1)
    finally:
        stop.set()
        for thread in loaders:
            thread.join(timeout=60)
    assert not pending, f"no numbers after 90 s of load for: {list(pending)}"
    # The target is the server, scraped through the shipped job.
    (up,) = query(prometheus, 'up{job="cnnserve"}')
    assert up["metric"]["instance"] == server.metrics_address and up["value"][1] == "1"
    info = query(prometheus, f'cnnserve_model_info{{model="{MODEL}"}}')
    assert info[0]["metric"]["weight_layers"] == "20" and info[0]["metric"]["provider"] == "CPUExecutionProvider"
    latency = next(v for k, v in answers.items() if "p99" in k or "0.99" in k)
    assert all(0 < v < 10 for v in latency)
