"""Debian's real nginx (which `make test` installs) on the shipped deploy/nginx/cnnserve.conf, in
front of three real replicas on loopback: tritonclient through it gets the right answers, every
replica serves a share, and a rolling restart under continuous load fails no request."""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
from deployfiles import ROOT
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import ServerProcess, http_input, model_total, ort_run, replicas, start_server, triton_input, wait_ready

from cnnserve.client.scrape import scrape, total
from cnnserve.server.settings import MIB, Settings

CONFIG = ROOT / "deploy" / "nginx" / "cnnserve.conf"
MODEL = "lenet5"
# Each replica keeps serving this long after SIGTERM (health NOT_SERVING meanwhile), while it is
# taken out of nginx's upstream: Kubernetes' preStop sleep, as a server setting.
DRAIN = "2"


def nginx_binary() -> str:
    """Debian installs nginx as /usr/sbin/nginx, which is not on every user's PATH."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        pytest.fail("nginx is not installed: `make test` installs Debian's nginx package (make system-packages)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{CONFIG.name} should hold {old!r} once"
    return text.replace(old, new)


def site_config(grpc_port: int, http_port: int, servers: list[ServerProcess]) -> str:
    """The shipped configuration with loopback listeners, and ``servers`` as its upstreams in
    place of compose's service name (with the same parameters)."""
    text = _once(CONFIG.read_text(), "listen 8001 http2;", f"listen 127.0.0.1:{grpc_port} http2;")
    text = _once(text, "listen 8000;", f"listen 127.0.0.1:{http_port};")
    for port, addresses in (("8001", [s.grpc_address for s in servers]), ("8000", [s.http_address for s in servers])):
        (line,) = re.findall(rf"^ *server cnnserve:{port} resolve\b.*$", text, re.MULTILINE)
        params = line.split(" resolve", 1)[1].rstrip(";")
        lines = [f"server {address}{params};" for address in addresses] or ["server 127.0.0.1:1 down;"]
        text = text.replace(line, "\n".join("    " + entry for entry in lines))
    return text


@dataclass
class Nginx:
    """nginx in the foreground (``daemon off``) with its configuration, pid file, logs and temp
    paths in a folder of its own, listening on free loopback ports; never the system's nginx."""

    folder: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text() if path.exists() else ""

    def write(self, servers: list[ServerProcess]) -> None:
        f = self.folder
        (f / "cnnserve.conf").write_text(site_config(self.grpc_port, self.http_port, servers))
        temp = "\n".join(f"    {kind}_temp_path {f / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                              "scgi"))  # fmt: skip
        (f / "nginx.conf").write_text(
            f"worker_processes 1;\npid {f / 'nginx.pid'};\nerror_log {f / 'error.log'} notice;\n"
            f"events {{\n    worker_connections 4096;\n}}\n"
            f"http {{\n    access_log off;\n{temp}\n    include {f / 'cnnserve.conf'};\n}}\n"
        )

    def command(self, *args: str) -> list[str]:
        return [nginx_binary(), "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"), *args]

    def test_config(self) -> None:
        done = subprocess.run(self.command("-t", "-q"), capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

    def start(self, servers: list[ServerProcess]) -> None:
        self.write(servers)
        self.test_config()
        self.process = subprocess.Popen(self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"nginx exited:\n{self.log}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                return
            time.sleep(0.05)
        raise AssertionError(f"nginx did not listen:\n{self.log}")

    def reload(self, servers: list[ServerProcess]) -> None:
        """New upstreams: the master starts workers on the new configuration and the old ones
        finish the calls they hold (their clients get GOAWAY and move to the new workers)."""
        assert self.process is not None
        self.write(servers)
        self.test_config()
        before = self.log.count("start worker process")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self.log.count("start worker process") == before:
            assert time.monotonic() < deadline, f"nginx did not reload:\n{self.log}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running_nginx(folder: Path, servers: list[ServerProcess]) -> Iterator[Nginx]:
    nginx = Nginx(folder)
    nginx.start(servers)
    try:
        yield nginx
    finally:
        nginx.stop()


@dataclass
class Load:
    """Callers sending requests through nginx without pause, each checking every answer."""

    address: str
    x: np.ndarray
    expected: np.ndarray
    callers: int = 6
    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _call(self) -> None:
        client = tc.InferenceServerClient(self.address)
        try:
            while not self._stop.is_set():
                try:
                    reply = client.infer(MODEL, [triton_input("input", self.x)], client_timeout=30)
                    good = np.allclose(reply.as_numpy("logits"), self.expected, rtol=1e-4, atol=1e-5)
                    error = "" if good else "wrong answer"
                except Exception as exc:  # every failure counts, whatever its kind
                    error = str(exc) or type(exc).__name__
                with self._lock:
                    if error:
                        self.failed[error[:70]] += 1
                        if len(self.messages) < 10:
                            self.messages.append(error)
                    else:
                        self.ok += 1
        finally:
            client.close()

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(self.callers)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.ok, sum(self.failed.values())


Sample = tuple[np.ndarray, np.ndarray]


def answered(server: ServerProcess) -> float:
    """Requests for the model a replica has answered, by its own metrics."""
    return model_total(scrape(server.metrics_address), MODEL, "cnnserve_requests_total")


def has_answered(server: ServerProcess) -> bool:
    return answered(server) > 0


@pytest.fixture(scope="module")
def sample(small_repo: Path) -> Sample:
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32), dtype=np.float32)
    return x, ort_run(small_repo, MODEL, x)


def exit_status(server: ServerProcess, timeout: float = 60) -> int:
    """The exit status of a server already signalled (once: a second SIGTERM that comes after
    its event loop has closed would kill it)."""
    try:
        return server.process.wait(timeout)
    finally:
        server.close()


def replace(fleet: list[ServerProcess], i: int, repo: Path, nginx: Nginx) -> None:
    """Replica ``i`` replaced as a Deployment does: SIGTERM, and at the same moment out of the
    upstream (nginx reloaded, as Kubernetes takes a terminating pod out of its endpoints); a fresh
    replica started, and put in the upstream once it is ready (as its readiness probe gates it)."""
    old = fleet[i]
    old.process.send_signal(signal.SIGTERM)
    nginx.reload([s for s in fleet if s is not old])
    assert exit_status(old) == 0, old.output
    new = start_server(repo, "--model", MODEL, "--drain-seconds", DRAIN)
    fleet[i] = new  # stopped at the end by `replicas`, whatever happens
    wait_ready(new.grpc_address)
    nginx.reload(fleet)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet(small_repo: Path) -> Iterator[list[ServerProcess]]:
    with replicas(small_repo, 3, "--model", MODEL, "--drain-seconds", DRAIN) as servers:
        yield servers


@pytest.fixture(scope="module")
def nginx(fleet: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with running_nginx(tmp_path_factory.mktemp("nginx"), fleet) as proxy:
        yield proxy


def test_the_shipped_configuration_proxies_grpc_and_http_with_the_servers_message_limit() -> None:
    text = CONFIG.read_text()
    assert "grpc_pass grpc://cnnserve_grpc;" in text and "proxy_pass http://cnnserve_http;" in text
    assert re.findall(r"client_max_body_size (\d+)m;", text) == [str(Settings().max_message_bytes // MIB)] * 2
    assert re.search(r"^\s*grpc_next_upstream error timeout", text, re.MULTILINE)
    assert len(re.findall(r"^\s*keepalive \d+;", text, re.MULTILINE)) == 2  # to the replicas


def test_tritonclient_through_nginx_gets_onnx_runtimes_answers_from_every_replica(
    fleet: list[ServerProcess], nginx: Nginx, small_repo: Path
) -> None:
    before = [scrape(s.metrics_address) for s in fleet]
    x = np.random.default_rng(1).standard_normal((4, 1, 32, 32), dtype=np.float32)
    expected = ort_run(small_repo, MODEL, x)
    grpc_client = tc.InferenceServerClient(nginx.grpc_address)
    http_client = th.InferenceServerClient(nginx.http_address)
    try:
        assert grpc_client.is_server_ready() and http_client.is_server_ready()
        for _ in range(12):
            got = grpc_client.infer(MODEL, [triton_input("input", x)]).as_numpy("logits")
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
            got = http_client.infer(MODEL, [http_input(x)]).as_numpy("logits")
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    finally:
        grpc_client.close()
        http_client.close()
    # nginx spread the calls of one client connection over every replica, by protocol.
    for server, earlier in zip(fleet, before, strict=True):
        now = scrape(server.metrics_address)
        for rpc in ("ModelInfer", "/v2/models/{name}/infer"):
            served = total(now, "cnnserve_requests_total", model=MODEL, rpc=rpc, code="OK")
            served -= total(earlier, "cnnserve_requests_total", model=MODEL, rpc=rpc, code="OK")
            assert served > 0, f"{server.grpc_address} served no {rpc} call through nginx"


def test_a_replica_draining_says_not_ready_and_still_answers(small_repo: Path, sample: Sample) -> None:
    """What the rolling restart relies on: after SIGTERM, --drain-seconds of NOT_SERVING health
    during which requests are still answered; then a clean stop."""
    x, expected = sample
    server = start_server(small_repo, "--model", MODEL, "--drain-seconds", "5")
    client = tc.InferenceServerClient(server.grpc_address)
    signalled = False
    try:
        wait_ready(server.grpc_address)
        server.process.send_signal(signal.SIGTERM)
        signalled = True
        wait_for(lambda: not client.is_server_ready(), "readiness going false")
        assert not client.is_model_ready(MODEL)
        with grpc.insecure_channel(server.grpc_address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
        got = client.infer(MODEL, [triton_input("input", x)]).as_numpy("logits")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    finally:
        client.close()
        if server.process.poll() is None and not signalled:
            server.process.send_signal(signal.SIGTERM)
        code = exit_status(server)
    assert code == 0, server.output
    assert "still taking requests for 5s (--drain-seconds)" in server.output


def test_a_rolling_restart_under_continuous_load_fails_no_request(
    fleet: list[ServerProcess], nginx: Nginx, small_repo: Path, sample: Sample
) -> None:
    x, expected = sample
    originals = list(fleet)
    served: list[int] = []
    with Load(nginx.grpc_address, x, expected) as load:
        wait_for(lambda: load.counts()[0] >= 50, "answers through nginx")
        for i in range(len(fleet)):
            ok = load.counts()[0]
            replace(fleet, i, small_repo, nginx)
            wait_for(functools.partial(has_answered, fleet[i]), f"call reaching the fresh replica {i}")
            served.append(load.counts()[0] - ok)
    ok, failed = load.counts()
    assert failed == 0, f"{failed} of {ok + failed} requests failed: {dict(load.failed)}"
    assert all(n > 0 for n in served), served  # answers kept coming while each replica was replaced
    assert not {s.grpc_address for s in originals} & {s.grpc_address for s in fleet}  # every replica is new
    assert all(answered(s) > 0 for s in fleet)
