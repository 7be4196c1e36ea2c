"""Triton-mode traces end to end: a server started with --trace-config writes Triton's JSON
trace file, with each traced request's stages in order and the batch it rode in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tritonclient.grpc as tc
from harness import crowd, http_call, serving, triton_input

RECORDS = ("REQUEST_START", "COMPUTE_START", "COMPUTE_END", "REQUEST_END")
FRONT = {
    "grpc": (["GRPC_WAITREAD_END", "DECODE_START", "DECODE_END"], ["REQUEST_END", "ENCODE_START", "GRPC_SEND_START"]),
    "http": (["HTTP_RECV_START", "HTTP_RECV_END", "DECODE_START", "DECODE_END"],
             ["REQUEST_END", "ENCODE_START", "HTTP_SEND_START", "HTTP_SEND_END"]),
}  # fmt: skip


def _traces(path: Path) -> dict[int, dict[str, object]]:
    by_id: dict[int, dict[str, object]] = {}
    for entry in json.loads(path.read_text()):
        by_id.setdefault(entry["id"], {}).update(entry)
    return by_id


def test_every_request_traced_at_rate_one(small_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    x = np.zeros((1, 3, 32, 32), np.float32)
    with serving(small_repo, "--model", "cifar_resnet20", "--max-queue-delay-us", "2000000", "--max-batch-size", "4",
                 "--preferred-batch-sizes", "none", "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
                 "--trace-config", f"triton,file={out}") as server:  # fmt: skip
        clients = [tc.InferenceServerClient(server.grpc_address) for _ in range(5)]
        sent = {"alone", "by-http"}
        try:
            clients[0].infer("cifar_resnet20", [triton_input("input", x)], request_id="alone")

            def call(attempt: int, n: int) -> None:
                sent.add(f"crowd{attempt}-{n}")
                clients[n].infer("cifar_resnet20", [triton_input("input", x)], request_id=f"crowd{attempt}-{n}")

            # Five at once: one finds the model idle and runs alone, the others share a run.
            crowd(server, "cifar_resnet20", call, 5)
        finally:
            for client in clients:
                client.close()
        body = json.dumps({"id": "by-http", "inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                                        "data": [0.0] * 3072}]}).encode()  # fmt: skip
        assert http_call(server, "POST", "/v2/models/cifar_resnet20/infer", body)[0] == 200
    traces = _traces(out)  # written when the server stopped
    assert {t["request_id"] for t in traces.values()} == sent
    assert {t["protocol"] for t in traces.values() if t["request_id"] == "by-http"} == {"http"}
    shared: dict[int, list[int]] = {}
    for trace in traces.values():
        names = [s["name"] for s in trace["timestamps"]]  # type: ignore[union-attr]
        times = [s["ns"] for s in trace["timestamps"]]  # type: ignore[union-attr]
        assert trace["model_name"] == "cifar_resnet20" and trace["model_version"] == 1 and times == sorted(times)
        # The front end's stages around the model's, in order.
        first, last = FRONT[trace["protocol"]]  # type: ignore[index]
        assert names[: len(first)] == first and names[-len(last) :] == last, names
        assert names[len(first)] == "REQUEST_START" and all(stage in names for stage in RECORDS)
        assert trace["rpc"] == ("ModelInfer" if trace["protocol"] == "grpc" else "/v2/models/{name}/infer")
        if "batch" in trace:  # queued: it waited, then rode in a run with its stages
            assert "QUEUE_START" in names and "COMPUTE_INPUT_END" in names and "COMPUTE_OUTPUT_START" in names
            batch = trace["batch"]
            shared.setdefault(batch["id"], []).append(batch["position"])  # type: ignore[index]
    # Callers at once with a long queue delay: some of them shared a run, each at its place.
    assert any(len(positions) > 1 for positions in shared.values()), shared
    assert all(sorted(p) == list(range(len(p))) for p in shared.values())


def test_rate_and_count(small_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    x = np.zeros((1, 1, 32, 32), np.float32)
    flags = ["--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=2", "--trace-config", "count=3",
             "--trace-config", f"triton,file={out}", "--trace-config", "triton,log-frequency=2"]  # fmt: skip
    with serving(small_repo, "--model", "lenet5", *flags) as server, tc.InferenceServerClient(server.grpc_address) as c:
        for n in range(10):
            c.infer("lenet5", [triton_input("input", x)], request_id=str(n))
    # Every second request, three in all: 1, 3 and 5 (0-based), two in trace.json.0, one in .1.
    first, second = _traces(Path(f"{out}.0")), _traces(Path(f"{out}.1"))
    assert [t["request_id"] for t in first.values()] == ["1", "3"]
    assert [t["request_id"] for t in second.values()] == ["5"]
    assert not out.exists() and not Path(f"{out}.2").exists()
