"""cnnserve against Seldon MLServer over REST with JSON tensors, what curl users send, in one run.

    python -m bench.vs_mlserver --mlserver /path/to/venv/bin/mlserver [--callers 32] [--seconds 8]

MLServer is not a dependency of cnnserve (its pins clash with ours): install it in a virtual
environment of its own (``python -m venv mls && mls/bin/pip install mlserver==1.7.1 onnxruntime``)
and name its ``mlserver`` executable. It serves the same ONNX file through the smallest custom
runtime an MLServer user would write (an ``MLModel`` whose ``predict`` runs an ONNX Runtime
session; MLServer ships no ONNX runtime), with MLServer's default settings. Both servers are
loaded, in rounds taking turns, by the stock ``tritonclient.http``: ``--callers`` threads, each with
a client of its own, sending the model's input as JSON ``data`` (``binary_data=False``, with
``Content-Type: application/json``) and asking for the output in JSON. The table gives requests/s
(best of the rounds), p50 and p99 latency (of that round) and cnnserve's ratio to MLServer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tritonclient.http as th

from bench.common import ROOT, LoadReport, cpu_seconds, ensure_exported, free_port, progress, serving_process
from cnnserve.repository import load_entry

WARMUP = 1.0

RUNTIME = """
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        self._session = ort.InferenceSession(self.settings.parameters.uri, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        (y,) = self._session.run([self._output], {self._input: x})
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output(self._output, y)])
"""


@contextlib.contextmanager
def running_mlserver(executable: str, model: str, onnx_path: Path, workers: int | None) -> Iterator[tuple[str, int]]:
    """``mlserver start`` over a folder holding the runtime and the model's settings; yields its
    HTTP address and pid once the model is ready."""
    with tempfile.TemporaryDirectory(prefix="mlserver.") as folder:
        root = Path(folder)
        http_port = free_port()
        (root / "onnx_model.py").write_text(RUNTIME)
        settings = {"http_port": http_port, "grpc_port": free_port(), "metrics_port": free_port(),
                    "host": "127.0.0.1", "debug": False}  # fmt: skip
        if workers is not None:
            settings["parallel_workers"] = workers
        (root / "settings.json").write_text(json.dumps(settings))
        model_settings = {
            "name": model,
            "implementation": "onnx_model.OnnxModel",
            "parameters": {"uri": str(onnx_path)},
        }
        (root / "model-settings.json").write_text(json.dumps(model_settings))
        log = (root / "mlserver.log").open("w")
        process = subprocess.Popen([executable, "start", str(root)], cwd=root, stdout=log, stderr=subprocess.STDOUT)
        address = f"127.0.0.1:{http_port}"
        try:
            _wait_ready(address, model, process, root / "mlserver.log")
            yield address, process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _wait_ready(address: str, model: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mlserver exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        url = f"http://{address}/v2/models/{model}/ready"
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"mlserver did not get {model} ready within 120 s:\n{log.read_text()[-3000:]}")


def json_load(address: str, model: str, x: np.ndarray, input_name: str, output_name: str, *, callers: int,
              seconds: float, warmup: float = WARMUP) -> LoadReport:  # fmt: skip
    """``callers`` threads, each with a stock ``tritonclient.http`` client of its own, sending ``x``
    as JSON and asking for ``output_name`` in JSON, back to back for ``warmup`` + ``seconds``."""
    report = LoadReport(items_per_request=1)
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds

    def caller() -> None:
        client = th.InferenceServerClient(address, connection_timeout=60, network_timeout=60)
        tensor = th.InferInput(input_name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=False)
        wanted = [th.InferRequestedOutput(output_name, binary_data=False)]
        latencies: list[float] = []
        failures: list[str] = []
        try:
            while (sent := time.perf_counter()) < end:
                try:
                    client.infer(model, [tensor], outputs=wanted, headers={"Content-Type": "application/json"})
                except Exception as exc:  # counted, and the first message kept
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if sent >= measure_from:
                    latencies.append(time.perf_counter() - sent)
        finally:
            client.close()
        with lock:
            report.latencies.extend(latencies)
            for failure in failures:
                report.errors[failure.split(":")[0]] += 1
                report.error_messages.setdefault(failure.split(":")[0], failure)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = seconds
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--mlserver", default=shutil.which("mlserver"), help="the mlserver executable (default: on PATH)"
    )
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--mlserver-workers",
        type=int,
        default=None,
        metavar="N",
        help="MLServer's parallel_workers (default: its own default; 0 runs inference in its server process)",
    )
    args = parser.parse_args()
    if not args.mlserver:
        raise SystemExit("no mlserver executable: install MLServer in a venv of its own and pass --mlserver PATH")
    ensure_exported(args.repo, args.model)
    config = load_entry(args.repo / args.model)
    spec, output = config.inputs[0], config.outputs[0]
    x = np.random.default_rng(0).random((1, *spec.shape), dtype=np.float32)
    reports: dict[str, list[tuple[LoadReport, float]]] = {"cnnserve": [], "MLServer": []}
    with contextlib.ExitStack() as stack:
        served = stack.enter_context(serving_process(args.repo, "--model", args.model, http_port="0"))
        servers = {"cnnserve": (served.http, served.pid),
                   "MLServer": stack.enter_context(running_mlserver(args.mlserver, args.model, config.onnx_path,
                                                                    args.mlserver_workers))}  # fmt: skip
        for round_ in range(args.rounds):
            for name, (address, pid) in servers.items():
                progress(f"round {round_ + 1}/{args.rounds}: {name}, {args.callers} callers, JSON over HTTP")
                before = cpu_seconds(pid)
                report = json_load(address, args.model, x, spec.name, output.name, callers=args.callers,
                                   seconds=args.seconds)  # fmt: skip
                spent = cpu_seconds(pid) - before  # the warm-up's requests too: counted below
                if report.failed:
                    raise SystemExit(f"{name}: {report.failed} requests failed: {report.error_messages}")
                reports[name].append((report, spent))
    best = {name: max(rs, key=lambda r: r[0].requests_per_second) for name, rs in reports.items()}
    print(f"{args.model}, {args.callers} callers, JSON tensors over HTTP/1.1 (stock tritonclient.http)")
    print(f"{'server':<12}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'server CPU us/request':>24}")
    for name, (report, spent) in best.items():
        # The CPU was spent over the warm-up and the measured span: per request at the same rate.
        per_request = spent / (report.requests_per_second * (report.seconds + WARMUP)) * 1e6
        print(f"{name:<12}{report.requests_per_second:>12,.0f}{report.percentile(50) * 1e3:>9.2f}"
              f"{report.percentile(99) * 1e3:>9.2f}{per_request:>24,.0f}")  # fmt: skip
    ratio = best["cnnserve"][0].requests_per_second / best["MLServer"][0].requests_per_second
    print(f"cnnserve / MLServer: {ratio:.2f}x requests/s" if math.isfinite(ratio) else "no requests answered")


if __name__ == "__main__":
    sys.exit(main())
