"""TLS and mutual TLS on both ports, with real certificates made for the test, against a real
server: the stock tritonclient (gRPC and HTTP), clients refused as they should be, the files
checked at start, renewal on SIGHUP, and the metrics endpoint on a host of its own."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
from certificates import Authority
from cryptography import x509
from harness import ServerProcess, cnnserve, http_input, ort_run, start_server, triton_input
from imagefiles import encode, random_rgb
from tritonclient.utils import InferenceServerException

X = np.random.default_rng(3).standard_normal((1, 1, 32, 32), dtype=np.float32)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Authority(folder / "ca"), Authority(folder / "other", "another CA")
    return SimpleNamespace(ca=ca, server=ca.issue("server", server=True), client=ca.issue("client"),
                           stranger=other.issue("stranger"), other=other)  # fmt: skip


def grpc_client(proc: ServerProcess, pki: SimpleNamespace, client: object = None) -> tc.InferenceServerClient:
    pair = client if client is not None else None
    return tc.InferenceServerClient(
        proc.grpc_address.replace("127.0.0.1", "localhost"),
        ssl=True,
        root_certificates=str(pki.ca.cert_path),
        private_key=str(pair.key) if pair else None,  # type: ignore[attr-defined]
        certificate_chain=str(pair.cert) if pair else None,  # type: ignore[attr-defined]
    )


@contextmanager
def tls_server(repo: Path, pki: SimpleNamespace, *args: str) -> Iterator[ServerProcess]:
    proc = start_server(repo, "--model", "lenet5", "--tls-cert", str(pki.server.cert), "--tls-key",
                        str(pki.server.key), *args)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "cnnserve ready:" not in proc.output:
            assert proc.process.poll() is None and time.monotonic() < deadline, proc.output
            time.sleep(0.1)
        yield proc
    finally:
        assert proc.terminate() == 0, proc.output


def https_context(pki: SimpleNamespace, client: object = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))  # type: ignore[attr-defined]
    return context


def https_status(proc: ServerProcess, path: str, context: ssl.SSLContext) -> int:
    url = f"https://{proc.http_address.replace('127.0.0.1', 'localhost')}{path}"
    with urllib.request.urlopen(url, context=context, timeout=30) as reply:
        return int(reply.status)


def test_tls_on_both_ports_with_the_stock_clients(small_repo: Path, pki: SimpleNamespace) -> None:
    with tls_server(small_repo, pki) as proc:
        with grpc_client(proc, pki) as client:
            logits = client.infer("lenet5", [triton_input("input", X)]).as_numpy("logits")
        np.testing.assert_allclose(logits, ort_run(small_repo, "lenet5", X), rtol=1e-5, atol=1e-6)
        # Clear text to a TLS port gets nowhere.
        with tc.InferenceServerClient(proc.grpc_address) as plain, pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=10)
        http = th.InferenceServerClient(proc.http_address.replace("127.0.0.1", "localhost"), ssl=True,
                                        ssl_context_factory=lambda: https_context(pki))  # fmt: skip
        try:
            result = http.infer("lenet5", [http_input(X)]).as_numpy("logits")
        finally:
            http.close()
        np.testing.assert_allclose(result, logits, rtol=1e-6)
        assert https_status(proc, "/v2/health/ready", https_context(pki)) == 200


def test_mutual_tls_takes_only_clients_the_ca_signed(small_repo: Path, pki: SimpleNamespace, tmp_path: Path) -> None:
    with tls_server(small_repo, pki, "--tls-client-ca", str(pki.ca.cert_path)) as proc:
        with grpc_client(proc, pki, pki.client) as client:
            assert client.infer("lenet5", [triton_input("input", X)]).as_numpy("logits").shape == (1, 10)
        for who in (None, pki.stranger):  # no certificate; one another CA signed
            with grpc_client(proc, pki, who) as client, pytest.raises(InferenceServerException) as caught:
                client.is_server_live(client_timeout=10)
            assert caught.value.status() == "StatusCode.UNAVAILABLE"
        assert https_status(proc, "/v2/health/live", https_context(pki, pki.client)) == 200
        for who in (None, pki.stranger):
            with pytest.raises((ssl.SSLError, OSError)):
                https_status(proc, "/v2/health/live", https_context(pki, who))
        # cnnserve's own clients: --tls-ca, --tls-cert, --tls-key.
        image = tmp_path / "digit.png"
        image.write_bytes(encode(random_rgb(32, 32)))
        server = proc.grpc_address.replace("127.0.0.1", "localhost")
        common = ["classify", str(image), "--model", "lenet5", "--server", server, "--json"]
        done = cnnserve(*common, "--tls-ca", str(pki.ca.cert_path), "--tls-cert", str(pki.client.cert), "--tls-key",
                        str(pki.client.key))  # fmt: skip
        assert done.returncode == 0 and len(json.loads(done.stdout)[0]["classes"]) == 5, done.stderr
        refused = cnnserve(*common, "--tls-ca", str(pki.ca.cert_path))  # no client certificate
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_bad_files_are_refused_at_start_naming_the_flag(small_repo: Path, pki: SimpleNamespace, tmp_path: Path) -> None:
    expired = pki.ca.issue("expired", server=True, expired=True)
    text = tmp_path / "not.pem"
    text.write_text("hello")
    cases = [
        (["--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(pki.server.key)], "--tls-cert", "no such file"),
        (["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.client.key)], "--tls-key",
         "the key does not match the certificate"),
        (["--tls-cert", str(expired.cert), "--tls-key", str(expired.key)], "--tls-cert", "expired on"),
        (["--tls-cert", str(text), "--tls-key", str(pki.server.key)], "--tls-cert", "not a PEM file"),
        (["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key), "--tls-client-ca",
          str(tmp_path / "nope.pem")], "--tls-client-ca", "no such file"),
    ]  # fmt: skip
    ports = ["--repo", str(small_repo), "--model", "lenet5", "--grpc-port", "0", "--http-port", "0",
             "--metrics-port", "-1"]  # fmt: skip
    for args, flag, why in cases:
        done = cnnserve("serve", *ports, *args, timeout=60)
        assert done.returncode == 1, done.stderr
        line = next((line for line in done.stderr.splitlines() if flag in line and why in line), None)
        assert line is not None, (flag, why, done.stderr)
        assert "cnnserve listening" not in done.stdout  # checked before anything listens
    refused = cnnserve("serve", *ports, "--tls-cert", str(pki.server.cert), timeout=60)
    assert refused.returncode != 0 and "give both (--tls-cert and --tls-key) or neither" in refused.stderr


def served_certificate(address: str, pki: SimpleNamespace, alpn: list[str]) -> str:
    """The common name of the certificate a new connection to ``address`` gets."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    context.set_alpn_protocols(alpn)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    name = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    return str(name)


def test_sighup_renews_the_certificate_without_dropping_connections(
    small_repo: Path, pki: SimpleNamespace, tmp_path: Path
) -> None:
    live = SimpleNamespace(cert=tmp_path / "live.crt", key=tmp_path / "live.key")
    live.cert.write_bytes(pki.server.cert.read_bytes())
    live.key.write_bytes(pki.server.key.read_bytes())
    proc = start_server(small_repo, "--model", "lenet5", "--tls-cert", str(live.cert), "--tls-key", str(live.key))
    try:
        deadline = time.monotonic() + 120
        while "cnnserve ready:" not in proc.output:
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.1)
        assert served_certificate(proc.grpc_address, pki, ["h2"]) == "server"
        with grpc_client(proc, pki) as before:
            assert before.is_server_ready()
            renewed = pki.ca.issue("renewed", server=True)
            live.cert.write_bytes(renewed.cert.read_bytes())
            live.key.write_bytes(renewed.key.read_bytes())
            proc.process.send_signal(1)  # SIGHUP
            deadline = time.monotonic() + 30
            while "TLS files renewed" not in proc.output:
                assert time.monotonic() < deadline, proc.output
                time.sleep(0.05)
            assert served_certificate(proc.grpc_address, pki, ["h2"]) == "renewed"
            assert served_certificate(proc.http_address, pki, ["http/1.1"]) == "renewed"
            # The connection made before the renewal goes on.
            assert before.infer("lenet5", [triton_input("input", X)]).as_numpy("logits").shape == (1, 10)
        # A renewal that cannot be read keeps the files in use.
        live.key.write_text("garbage")
        proc.process.send_signal(1)
        deadline = time.monotonic() + 30
        while "TLS files not renewed, the old ones stay in use" not in proc.output:
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.05)
        assert served_certificate(proc.grpc_address, pki, ["h2"]) == "renewed"
    finally:
        assert proc.terminate() == 0, proc.output


def test_the_metrics_endpoint_binds_its_own_host(small_repo: Path) -> None:
    proc = start_server(small_repo, "--model", "lenet5", "--metrics-host", "127.0.0.2")
    try:
        host, port = proc.metrics_address.rsplit(":", 1)
        assert host == "127.0.0.2"
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=30) as reply:
            assert b"cnnserve_" in reply.read()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", int(port))) != 0  # not on the serving address
    finally:
        assert proc.terminate() == 0, proc.output
