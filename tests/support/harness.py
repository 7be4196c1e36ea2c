"""Starting the real server in a subprocess on free ports, and talking to it, for the tests."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tc
import tritonclient.http as th

from cnnserve.client.scrape import Samples, scrape, total

__all__ = ["Served", "ServerProcess", "accepted", "at", "batched", "cli", "cnnserve", "copy_repository", "crowd",
           "http_call", "http_input", "model_total", "ort_run", "scrape", "serving", "start_server", "triton_input",
           "wait_ready"]  # fmt: skip

LISTENING = re.compile(r"cnnserve listening: grpc=(?P<grpc>\S+) metrics=(?P<metrics>\S+) http=(?P<http>\S+)")


@dataclass
class ServerProcess:
    """A ``cnnserve serve`` subprocess; its output is collected on a thread for assertions."""

    process: subprocess.Popen[str]
    grpc_address: str = ""
    metrics_address: str = ""
    http_address: str = ""
    lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    said_ready: bool = False  # it printed "cnnserve ready:"
    _models_ready: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match:
                self.grpc_address = match["grpc"]
                self.metrics_address = match["metrics"]
                self.http_address = match["http"]
                self._ready.set()
            elif line.startswith("cnnserve ready:"):
                self.said_ready = True
                self._models_ready.set()
        self._ready.set()  # the process ended: unblock waiters
        self._models_ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def collect(self) -> None:
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def wait_listening(self, timeout: float = 120) -> None:
        self.collect()
        if not self._ready.wait(timeout) or not self.grpc_address:
            self.process.kill()
            raise AssertionError(f"server did not start listening:\n{self.output}")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the server says ``cnnserve ready:`` (it prints it once, when its models first
        are): no polling. After that, readiness is :func:`wait_ready`'s to ask."""
        if not self._models_ready.wait(timeout) or not self.said_ready:
            raise AssertionError(f"server not ready after {timeout}s:\n{self.output}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server did not exit within {timeout}s of signal {sig}:\n{self.output}") from None
        finally:
            self.close()

    def close(self) -> None:
        """Wait for the output reader to see the end, then close the pipe."""
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def cnnserve(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A ``cnnserve`` subcommand run to its end in a process of its own, its output captured: for
    what crosses a process boundary (signals, exit statuses, a server's start)."""
    return subprocess.run([sys.executable, "-m", "cnnserve", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``cnnserve ARGS`` through its own entry, ``main()``, in the test's process: what it wrote
    and its exit status, as :func:`cnnserve` returns them."""
    from cnnserve.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(cwd or os.getcwd()):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's refusals and --version
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["cnnserve", *args], code, out.getvalue(), err.getvalue())


class Served(Protocol):
    """A running server's addresses: a ``cnnserve serve`` subprocess or one in the test's process."""

    @property
    def grpc_address(self) -> str: ...

    @property
    def http_address(self) -> str: ...

    @property
    def metrics_address(self) -> str: ...


def at(server: Served) -> list[str]:
    """The client flags that point at ``server``."""
    return ["--server", server.grpc_address, "--metrics", server.metrics_address]


def start_server(repo: Path, *args: str, env: dict[str, str] | None = None, wait: bool = True) -> ServerProcess:
    """Start ``cnnserve serve`` on free ports (port 0) and (``wait``) until it listens.

    Listening is not ready: models may still be loading; use :func:`wait_ready`.
    """
    command = [
        sys.executable, "-m", "cnnserve", "serve",
        "--repo", str(repo), "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--http-port", "0",
        *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    server = ServerProcess(process)
    if wait:
        server.wait_listening()
    return server


def wait_ready(address: str, timeout: float = 120) -> None:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(address)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if client.is_server_ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"server at {address} not ready after {timeout}s")


def model_total(samples: Samples, model: str, *names: str) -> float:
    """The sum of the samples of ``names`` whose ``model`` label is ``model``."""
    return sum(total(samples, name, model=model) for name in names)


def batched(before: Samples, after: Samples, model: str) -> tuple[float, float]:
    """(items, ONNX Runtime runs) of ``model`` between two scrapes."""

    def delta(name: str) -> float:
        return model_total(after, model, name) - model_total(before, model, name)

    return delta("cnnserve_batch_size_sum"), delta("cnnserve_batch_size_count")


def crowd(server: Served, model: str, call: Callable[[int, int], object], callers: int, tries: int = 5) -> None:
    """``callers`` threads call ``call(try, caller)`` at once, and again (up to ``tries`` times)
    until the batch metrics show a run of several items: on a loaded machine callers meant to
    share a run may come one after another's answer instead."""
    for attempt in range(tries):
        before, start = scrape(server.metrics_address), threading.Barrier(callers)

        def one(n: int, attempt: int = attempt, start: threading.Barrier = start) -> None:
            start.wait()
            call(attempt, n)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        items, runs = batched(before, scrape(server.metrics_address), model)
        if items > runs:
            return
    raise AssertionError(f"{tries} tries, and no two requests shared a run")


def accepted(proc: Served, model: str) -> tuple[float, float]:
    """(requests the server holds, requests it answered OK) for ``model``, from its metrics."""
    samples = scrape(proc.metrics_address)
    inflight = sum(v for lab, v in samples.get("cnnserve_inflight_requests", []) if lab["model"] == model)
    answered = samples.get("cnnserve_requests_total", [])
    ok = sum(v for lab, v in answered if lab["model"] == model and lab["code"] == "OK")
    return inflight, ok


def ort_run(repo: Path, name: str, x: np.ndarray, version: int = 1) -> np.ndarray:
    """``x`` through a bare ONNX Runtime session of ``repo``'s entry ``name`` at ``version``: the
    reference."""
    path = repo / name / str(version) / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def triton_input(name: str, x: np.ndarray, datatype: str = "FP32") -> tc.InferInput:
    tensor = tc.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def http_call(server: Served, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    """One raw HTTP request, as curl would send it: (status, body), whatever the status."""
    request = urllib.request.Request(f"http://{server.http_address}{path}", data=body, method=method,
                                     headers=headers or {})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_input(x: np.ndarray, binary: bool = True, name: str = "input", datatype: str = "FP32") -> th.InferInput:
    """``x`` as a ``tritonclient.http`` input: in binary (the client's default) or as JSON data."""
    tensor = th.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def copy_repository(source: Path, target: Path) -> Path:
    """Copy every entry of the repository ``source`` into ``target`` (to add or break entries
    without touching a shared one); return ``target``."""
    for entry in source.iterdir():
        shutil.copytree(entry, target / entry.name)
    return target


@contextlib.contextmanager
def serving(repo: Path, *args: str) -> Iterator[ServerProcess]:
    """A ready server over ``repo``; on leaving, it must stop cleanly (exit status 0)."""
    proc = start_server(repo, *args)
    try:
        proc.wait_ready()
        yield proc
    finally:
        assert proc.terminate() == 0, proc.output


@contextlib.contextmanager
def replicas(repo: Path, count: int, *args: str) -> Iterator[list[ServerProcess]]:
    """``count`` ready servers over ``repo``, started side by side on free ports: the replicas a
    balancer spreads calls over. The list may be changed in place (a replica replaced by a fresh
    one); on leaving, each server in it must stop cleanly (exit status 0)."""
    procs = [start_server(repo, *args, wait=False) for _ in range(count)]
    try:
        for proc in procs:
            proc.wait_listening()
        for proc in procs:
            proc.wait_ready()
        yield procs
    except BaseException:
        for proc in procs:
            with contextlib.suppress(AssertionError):
                proc.terminate()
        raise
    for proc in procs:  # side by side, each signalled once (a late second SIGTERM finds no handler)
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.process.wait(60))
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait()
            codes.append(None)
        finally:
            proc.close()
    assert codes == [0] * len(procs), f"exit statuses {codes}:\n" + "\n\n".join(proc.output for proc in procs)
