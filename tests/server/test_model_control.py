"""Model control as Triton's model repository extension has it, against real servers: load,
unload and new versions rolled out under load (explicit calls and a polled repository), a broken
version beside a serving one, and KServe's single-model layout. Nothing here asserts on time."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from harness import (
    Served,
    ServerProcess,
    accepted,
    cli,
    cnnserve,
    http_call,
    ort_run,
    scrape,
    serving,
    start_server,
    triton_input,
    wait_ready,
)
from tritonclient.utils import InferenceServerException

from cnnserve.builders.export import export

MODEL = "cifar_resnet20"
X = np.random.default_rng(7).standard_normal((1, 3, 32, 32), dtype=np.float32)
REFUSED = "explicit model load / unload is not allowed if polling is enabled"  # Triton's words


@pytest.fixture()
def repo(small_repo: Path, tmp_path: Path) -> Path:
    """A repository of its own (the tests add versions to it): cifar_resnet20 version 1, lenet5."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in (MODEL, "lenet5"):
        shutil.copytree(small_repo / name, repo / name)
    return repo


@dataclass
class Reply:
    sent: float  # time.monotonic() when the request left
    version: str
    logits: np.ndarray


@dataclass
class Load:
    """``callers`` threads sending ``X`` to ``MODEL`` without pause, each reply kept."""

    address: str
    callers: int = 16
    replies: list[Reply] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with tc.InferenceServerClient(self.address) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    result = client.infer(MODEL, [triton_input("input", X)], client_timeout=60)
                except InferenceServerException as exc:
                    self.failures.append(str(exc))
                    continue
                self.replies.append(Reply(sent, result.get_response().model_version, result.as_numpy("logits")))

    def wait_for(self, more: int, timeout: float = 120) -> None:
        """Until ``more`` replies beyond those so far have come (or a failure has)."""
        target, deadline = len(self.replies) + more, time.monotonic() + timeout
        while len(self.replies) < target and not self.failures:
            assert time.monotonic() < deadline, f"{len(self.replies)} replies, waiting for {target}"
            time.sleep(0.05)


@contextmanager
def under_load(proc: ServerProcess) -> Iterator[Load]:
    load = Load(proc.grpc_address)
    threads = [threading.Thread(target=load.run) for _ in range(load.callers)]
    for thread in threads:
        thread.start()
    try:
        load.wait_for(20)
        yield load
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=120)


def index(proc: ServerProcess) -> dict[tuple[str, str], tuple[str, str]]:
    """(name, version) -> (state, reason), from RepositoryIndex."""
    with tc.InferenceServerClient(proc.grpc_address) as client:
        models = client.get_model_repository_index(as_json=True).get("models", [])
    return {(m["name"], m.get("version", "")): (m.get("state", ""), m.get("reason", "")) for m in models}


def check_rollout(load: Load, repo: Path, switched: float) -> None:
    """No request failed; every reply is exactly one version's answer; those sent after the new
    version was serving are all the new version's."""
    assert load.failures == []
    assert {r.version for r in load.replies} == {"1", "2"}
    expected = {v: ort_run(repo, MODEL, X, version=int(v)) for v in ("1", "2")}
    assert not np.allclose(expected["1"], expected["2"], atol=1e-3)  # the two versions differ
    for reply in load.replies:
        np.testing.assert_allclose(reply.logits, expected[reply.version], rtol=1e-4, atol=1e-5)
    assert {r.version for r in load.replies if r.sent > switched} == {"2"}


def version_series(proc: ServerProcess, name: str) -> dict[str, float]:
    """version -> value of ``name`` for MODEL, from the server's metrics."""
    return {lab.get("version", ""): v for lab, v in scrape(proc.metrics_address).get(name, []) if lab["model"] == MODEL}


# -- explicit --------------------------------------------------------------------------------------


def test_a_new_version_loaded_explicitly_rolls_out_under_load(repo: Path) -> None:
    with serving(repo, "--model-control-mode", "explicit", "--load-model", MODEL) as proc:
        assert index(proc) == {(MODEL, "1"): ("READY", ""), ("lenet5", ""): ("UNAVAILABLE", "unloaded")}
        with under_load(proc) as load:
            export(MODEL, repo, seed=1, version=2)  # `cnnserve export --version 2`
            with tc.InferenceServerClient(proc.grpc_address) as client:
                client.load_model(MODEL)  # returns once version 2 serves
            switched = time.monotonic()
            load.wait_for(40)
        check_rollout(load, repo, switched)
        deadline = time.monotonic() + 60  # version 1 answers what it held, then closes
        while index(proc).get((MODEL, "1")) != ("UNAVAILABLE", "unloaded"):
            assert time.monotonic() < deadline, index(proc)
            time.sleep(0.1)
        assert index(proc)[(MODEL, "2")] == ("READY", "")
        # The metrics follow: version 2's batches counted apart, version 1's info series gone.
        assert version_series(proc, "cnnserve_batch_size_count")["2"] > 0
        assert set(version_series(proc, "cnnserve_model_info")) == {"2"}
        with tc.InferenceServerClient(proc.grpc_address) as client:
            assert [s["version"] for s in client.get_inference_statistics(MODEL, as_json=True)["model_stats"]] == ["2"]
            assert client.is_model_ready(MODEL, "2") and not client.is_model_ready(MODEL, "1")
    assert f"model {MODEL} version 1 unloaded" in proc.output


def test_a_broken_new_version_leaves_the_serving_one(repo: Path) -> None:
    (repo / MODEL / "2").mkdir()
    (repo / MODEL / "2" / "model.onnx").write_bytes(b"not an ONNX file")
    with serving(repo, "--model-control-mode", "explicit", "--load-model", f"{MODEL},lenet5") as proc:
        # At start the newest version is broken: the model fails, the server serves lenet5.
        assert index(proc)[(MODEL, "2")][0] == "UNAVAILABLE"
        shutil.rmtree(repo / MODEL / "2")
        with tc.InferenceServerClient(proc.grpc_address) as client:
            client.load_model(MODEL)  # version 1 now
            (repo / MODEL / "3").mkdir()
            (repo / MODEL / "3" / "model.onnx").write_bytes(b"not an ONNX file either")
            with pytest.raises(InferenceServerException) as caught:
                client.load_model(MODEL)
            assert caught.value.status() == "StatusCode.UNAVAILABLE"
            assert caught.value.message().startswith(
                f"load failed for model '{MODEL}': version 3 is at UNAVAILABLE state: "
            ), caught.value.message()
            result = client.infer(MODEL, [triton_input("input", X)])
        assert result.get_response().model_version == "1"  # untouched
        np.testing.assert_allclose(result.as_numpy("logits"), ort_run(repo, MODEL, X), rtol=1e-4, atol=1e-5)
        state, reason = index(proc)[(MODEL, "3")]
        assert state == "UNAVAILABLE" and "INVALID_PROTOBUF" in reason, reason
        assert index(proc)[(MODEL, "1")] == ("READY", "")
    assert f"model {MODEL} version 3 failed to load: " in proc.output and "version 1 goes on serving" in proc.output


def test_unload_answers_the_accepted_requests_first(repo: Path) -> None:
    proc = start_server(repo, "--model-control-mode", "explicit", "--load-model", "*", "--max-queue-delay-us",
                        "30000000")  # fmt: skip
    try:
        wait_ready(proc.grpc_address)
        xs = [np.random.default_rng(i).standard_normal((1, 3, 32, 32), dtype=np.float32) for i in range(5)]
        results: dict[int, np.ndarray | Exception] = {}

        def call(i: int) -> None:
            with tc.InferenceServerClient(proc.grpc_address) as client:
                try:
                    results[i] = client.infer(MODEL, [triton_input("input", xs[i])]).as_numpy("logits")
                except InferenceServerException as exc:
                    results[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(accepted(proc, MODEL)) < len(xs):  # held by the 30 s queue delay (or answered)
            assert time.monotonic() < deadline, proc.output
            time.sleep(0.05)
        with tc.InferenceServerClient(proc.grpc_address) as client:
            client.unload_model(MODEL)  # returns once the held requests are answered
            assert not client.is_model_ready(MODEL)
            with pytest.raises(InferenceServerException) as caught:
                client.infer(MODEL, [triton_input("input", X)])
            assert caught.value.status() == "StatusCode.UNAVAILABLE"
            assert caught.value.message() == f"model '{MODEL}' is not ready (unloaded)"
            assert client.is_model_ready("lenet5") and client.is_server_ready()  # the rest serves on
        for thread in threads:
            thread.join(timeout=60)
        for i, x in enumerate(xs):
            got = results[i]
            assert isinstance(got, np.ndarray), got
            np.testing.assert_allclose(got, ort_run(repo, MODEL, x), rtol=1e-4, atol=1e-5)
        # And over HTTP, the same extension: loaded again, unloaded again.
        assert http_call(proc, "POST", f"/v2/repository/models/{MODEL}/load") == (200, b"")
        assert http_call(proc, "GET", f"/v2/models/{MODEL}/ready")[0] == 200
        assert http_call(proc, "POST", f"/v2/repository/models/{MODEL}/unload") == (200, b"")
        assert http_call(proc, "GET", f"/v2/models/{MODEL}/ready")[0] == 400
        status, body = http_call(proc, "POST", "/v2/repository/models/nope/load")
        assert (status, json.loads(body)) == (
            404,
            {"error": f"failed to load 'nope': no such model in repository {repo}"},
        )
    finally:
        assert proc.terminate() == 0, proc.output


def test_without_explicit_mode_load_and_unload_are_refused_in_tritons_words(server: Served) -> None:
    with tc.InferenceServerClient(server.grpc_address) as client:
        for call in (client.load_model, client.unload_model):
            with pytest.raises(InferenceServerException) as caught:
                call("lenet5")
            assert (caught.value.status(), caught.value.message()) == ("StatusCode.UNAVAILABLE", REFUSED)
        assert client.is_model_ready("lenet5")
    status, body = http_call(server, "POST", "/v2/repository/models/lenet5/unload")
    assert (status, json.loads(body)) == (503, {"error": REFUSED})


# -- poll ------------------------------------------------------------------------------------------


def test_a_new_version_folder_rolls_out_under_load_in_poll_mode(repo: Path) -> None:
    with serving(repo, "--model-control-mode", "poll", "--repository-poll-seconds", "0.2") as proc:
        with under_load(proc) as load:
            export(MODEL, repo, seed=1, version=2)
            deadline = time.monotonic() + 120
            while index(proc).get((MODEL, "2")) != ("READY", ""):
                assert time.monotonic() < deadline, index(proc)
                time.sleep(0.05)
            switched = time.monotonic()
            load.wait_for(40)
        check_rollout(load, repo, switched)
        # A broken version 3 is tried once, logged, and version 2 serves on.
        (repo / MODEL / "3").mkdir()
        (repo / MODEL / "3" / "model.onnx").write_bytes(b"garbage")
        deadline = time.monotonic() + 60
        while index(proc).get((MODEL, "3"), ("",))[0] != "UNAVAILABLE":
            assert time.monotonic() < deadline, index(proc)
            time.sleep(0.05)
        time.sleep(1.0)  # five more looks at the repository
        assert index(proc)[(MODEL, "2")] == ("READY", "")
        # An entry that leaves the repository is unloaded.
        shutil.rmtree(repo / "lenet5")
        deadline = time.monotonic() + 60
        while index(proc).get(("lenet5", "1")) != ("UNAVAILABLE", "unloaded"):
            assert time.monotonic() < deadline, index(proc)
            time.sleep(0.05)
    assert proc.output.count(f"model {MODEL} version 3 failed to load") == 1


# -- settings and layouts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--load-model", "lenet5"], "load_models 'lenet5': only with model_control_mode explicit"),
     (["--model-control-mode", "explicit", "--workers", "2"],
      "model_control_mode explicit with 2 workers: a RepositoryModelLoad reaches one worker only")],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused_at_start(small_repo: Path, args: list[str], message: str) -> None:
    done = cnnserve("serve", "--repo", str(small_repo), "--grpc-port", "0", *args, timeout=60)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_kserves_single_model_layout_is_served_under_the_given_name(small_repo: Path, tmp_path: Path) -> None:
    """KServe's storage initializer puts one model's files in /mnt/models: config.json, labels
    and version folders at the top."""
    mnt = tmp_path / "mnt" / "models"
    shutil.copytree(small_repo / MODEL, mnt)
    with serving(mnt, "--model-name", "flowers") as proc, tc.InferenceServerClient(proc.grpc_address) as client:
        assert client.get_model_metadata("flowers", as_json=True)["name"] == "flowers"
        logits = client.infer("flowers", [triton_input("input", X)]).as_numpy("logits")
        assert [(m["name"], m["state"]) for m in client.get_model_repository_index(as_json=True)["models"]] == [
            ("flowers", "READY")
        ]
    np.testing.assert_allclose(logits, ort_run(small_repo, MODEL, X), rtol=1e-4, atol=1e-5)
    with serving(mnt) as proc, tc.InferenceServerClient(proc.grpc_address) as client:  # named by config.json
        assert client.is_model_ready(MODEL)


def test_export_adds_versions_and_repo_lists_them(repo: Path) -> None:
    export(MODEL, repo, seed=1, version=3)
    listing = json.loads(cli("repo", "--repo", str(repo), "--json").stdout)
    entry = next(m for m in listing["models"] if m["name"] == MODEL)
    assert (entry["version"], entry["versions"]) == (3, [1, 3])
    assert "1,[3]" in cli("repo", "--repo", str(repo)).stdout
    done = cli("export", MODEL, "--repo", str(repo), "--version", "3")
    assert done.returncode != 0 and "a served version is never overwritten" in done.stderr, done.stderr
