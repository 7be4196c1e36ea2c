"""The supervisor of a multi-worker server (``cnnserve serve --workers N``), after gunicorn's
arbiter: it holds the gRPC port, starts N worker processes (:mod:`cnnserve.server.parallel.worker`) that
all listen on it (``SO_REUSEPORT``: the kernel spreads connections over them), serves their summed
metrics on the metrics port, and watches them.

- Ready: it prints ``cnnserve ready:`` once every worker is, and tells each worker whether all the
  others are ready (a worker's health and readiness say so too: they speak for the whole server).
- A worker that dies is logged with its exit status and replaced; the port stays open, its calls in
  flight fail with UNAVAILABLE (their connections close), the others serve on. A replacement
  listens only once its models are ready, so no caller's new connection lands on a worker that
  cannot answer yet.
- A worker whose heartbeat stops (a deadlock, a stuck native call on its event loop, SIGSTOP)
  for longer than ``--worker-timeout`` is killed with SIGKILL, logged with the reason, and
  replaced: its connections close, so its callers' calls fail and they connect again elsewhere.
- A worker that cannot start exits with :data:`~cnnserve.server.parallel.protocol.BOOT_FAILED`
  and leaves its reason in its heartbeat file: at start-up that stops the server, naming the
  reason; so do ``CRASH_LIMIT`` replacements in a row that die before they are ready.
- SIGTERM or SIGINT: every worker is told to stop (each drains what it accepted, within
  ``--grace-seconds``), then the supervisor exits 0; a second signal kills them at once (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass

from cnnserve.repository import RepositoryError
from cnnserve.server import logs
from cnnserve.server.metrics import MetricsServer, forget_worker, serve_registry, workers_registry
from cnnserve.server.parallel import gpu_memory
from cnnserve.server.parallel.protocol import (
    BOOT_FAILED,
    HEARTBEAT_VARIABLE,
    LOG_SETTINGS_CHANGED,
    NUMBER_VARIABLE,
    PEERS_NOT_READY,
    PEERS_READY,
    SET_LOG_SETTINGS,
    SET_TRACE_SETTINGS,
    SETTINGS_VARIABLE,
    TRACE_SETTINGS_CHANGED,
    Heartbeat,
    beat_interval,
    settings_json,
)
from cnnserve.server.runtime.devices import CUDA, RuntimeUnavailable, providers_for
from cnnserve.server.security.tls import TlsError, read_files
from cnnserve.server.settings import EXPLICIT_WORKERS, Settings

log = logging.getLogger("cnnserve.supervisor")

CRASH_LIMIT = 5
"""Replacement workers that die before they are ready, in a row, before the server gives up."""
STOP_MARGIN_SECONDS = 30.0
"""How long past ``--drain-seconds`` and ``--grace-seconds`` a stopping worker may take before it
is killed."""


def worker_count(settings: Settings) -> int:
    """``--workers``, with ``auto`` resolved: on CUDA one per core up to 4 (four processes
    fed one GPU best: docs/architecture.md), on the CPU one per two cores (each worker's ONNX Runtime needs
    cores of its own)."""
    if settings.workers is not None:
        return settings.workers
    cores = os.cpu_count() or 1
    if CUDA in providers_for(settings.device):
        return max(1, min(4, cores))
    return max(1, cores // 2)


def worker_settings(settings: Settings, workers: int, port: int, http_port: int = -1) -> Settings:
    """What each worker runs with: the ports the supervisor holds, no metrics endpoint of its own,
    and, unless set, its share of the cores for ONNX Runtime's intra-op threads and for the
    threads that decode images and read positions."""
    share = max(1, (os.cpu_count() or 1) // workers)
    return dataclasses.replace(settings, grpc_port=port, http_port=http_port, metrics_port=-1, workers=1,
                               intra_op_threads=settings.intra_op_threads or share,
                               decode_threads=settings.decode_threads or share)  # fmt: skip


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening: it keeps the port
    for the workers (port 0: a free one, see ``getsockname``). A port that anything listens on
    already is refused, as a single server would be, rather than silently shared."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        with socket.socket(family, socket.SOCK_STREAM) as probe:  # no SO_REUSEPORT: exclusive
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {host}:{port} (in use?)") from exc
    held = socket.socket(family, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind((host, port))
    except OSError as exc:
        held.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port} (in use?)") from exc
    return held


@dataclass(eq=False)
class _Worker:
    number: int
    process: asyncio.subprocess.Process
    heartbeat: Heartbeat
    ready: bool = False
    models: str = ""  # what its "cnnserve ready:" line named
    killed: str = ""  # why the supervisor killed it, if it did

    @property
    def pid(self) -> int:
        return self.process.pid


def _status(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"


class Supervisor:
    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.count = workers
        self.workers: dict[int, _Worker] = {}
        self.port = 0
        self.http_port = -1  # off
        self.metrics_dir = ""
        self.heartbeat_dir = ""
        self._watchers: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._stopping = False
        self._forced = False
        self._failed = False  # a worker could not start: the exit status is 1
        self._all_ready_once = False
        self._early_deaths = 0  # replacements in a row that died before they were ready
        self._log_settings = ""  # as a client last changed them through a worker (JSON); "" never
        self._trace_settings = ""  # the same for the trace settings' table

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> int:
        s = self.settings
        held: list[socket.socket] = []
        try:
            held.append(reserve_port(s.host, s.grpc_port))
            if s.http_port >= 0:
                held.append(reserve_port(s.host, s.http_port))
        except OSError as exc:
            log.error("%s", exc)
            for sock in held:
                sock.close()
            return 1
        self.port = held[0].getsockname()[1]
        self.http_port = held[1].getsockname()[1] if len(held) > 1 else -1
        self.metrics_dir = tempfile.mkdtemp(prefix="cnnserve-metrics-")
        self.heartbeat_dir = tempfile.mkdtemp(prefix="cnnserve-heartbeats-")
        metrics: MetricsServer | None = None
        listening = asyncio.get_running_loop().create_task(self._listen_for_heartbeats(), name="heartbeats")
        try:
            if s.metrics_enabled:
                metrics_host = s.metrics_host or s.host
                metrics = serve_registry(workers_registry(self.metrics_dir), s.metrics_port, metrics_host)
            address = f"{s.metrics_host or s.host}:{metrics.port}" if metrics else "off"
            http = f"{s.host}:{self.http_port}" if self.http_port >= 0 else "off"
            print(f"cnnserve listening: grpc={s.host}:{self.port} metrics={address} http={http}", flush=True)
            timeout = f"--worker-timeout {s.worker_timeout:g}s" if s.worker_timeout > 0 else "no --worker-timeout"
            log.info("gRPC on %s:%d, HTTP on %s, metrics on %s; starting %d workers (%s)", s.host, self.port, http,
                     address, self.count, timeout)  # fmt: skip
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._signalled)
            loop.add_signal_handler(signal.SIGHUP, self._renew)
            for number in range(self.count):
                await self._start(number)
            await self._stop.wait()
            await self._stop_workers()
        except OSError as exc:
            log.error("%s", exc)
            self._failed = True
            await self._stop_workers()
        finally:
            listening.cancel()
            if metrics is not None:
                metrics.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            shutil.rmtree(self.heartbeat_dir, ignore_errors=True)
            for sock in held:
                sock.close()
        log.info("stopped")
        return 1 if self._failed or self._forced else 0

    def _signalled(self) -> None:
        if not self._stopping:
            log.info("shutting down: every worker drains what it accepted (a second signal kills them)")
            self._stopping = True
            self._stop.set()
            return
        log.warning("second signal: killing the workers")
        self._forced = True
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()

    def _give_up(self, why: str) -> None:
        log.error("%s; stopping the server", why)
        self._failed = True
        self._stopping = True
        self._stop.set()

    def _renew(self) -> None:
        """SIGHUP: each worker reads its TLS files again."""
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGHUP)

    async def _stop_workers(self) -> None:
        self._stopping = True
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        if not self._watchers:
            return
        allowed = self.settings.drain_seconds + self.settings.grace_seconds + STOP_MARGIN_SECONDS
        _, late = await asyncio.wait(self._watchers, timeout=allowed)
        if late:
            log.error("%d worker(s) still running %.0fs after SIGTERM: killing them", len(late), allowed)
            self._failed = True
            for worker in self.workers.values():
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
            await asyncio.wait(late)

    # -- the workers --------------------------------------------------------------------------

    async def _start(self, number: int) -> None:
        if self._stopping:
            return  # a replacement asked for just before the stop
        handle, path = tempfile.mkstemp(prefix=f"worker-{number}-", dir=self.heartbeat_dir)
        os.close(handle)  # made now: its time is the first beat, so a worker that never starts is silent too
        env = {
            **os.environ,
            SETTINGS_VARIABLE: settings_json(worker_settings(self.settings, self.count, self.port, self.http_port)),
            NUMBER_VARIABLE: str(number),
            HEARTBEAT_VARIABLE: path,
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cnnserve.server.parallel.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
            # Its own session: a terminal's Ctrl-C reaches the supervisor, which stops the workers in order.
            start_new_session=True,
        )  # fmt: skip
        worker = self.workers[number] = _Worker(number, process, Heartbeat(path))
        log.info("worker %d started (pid %d)", number, worker.pid)
        if self._log_settings:  # a replacement logs as the others do
            self._tell(worker, f"{SET_LOG_SETTINGS} {self._log_settings}")
        if self._trace_settings:  # and traces as they do
            self._tell(worker, f"{SET_TRACE_SETTINGS} {self._trace_settings}")
        if self._stopping:  # the stop began while it was being started: it stops too
            process.terminate()
        watcher = asyncio.get_running_loop().create_task(self._watch(worker), name=f"worker:{number}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: _Worker) -> None:
        """Follow one worker's stdout until it exits, then deal with its exit."""
        assert worker.process.stdout is not None
        async for raw in worker.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("cnnserve ready:"):
                worker.ready, worker.models = True, line.partition(":")[2].strip()
                log.info("worker %d (pid %d) is ready", worker.number, worker.pid)
                self._tell_readiness()
            elif line.startswith(LOG_SETTINGS_CHANGED):
                self._spread_log_settings(worker, line.removeprefix(LOG_SETTINGS_CHANGED).strip())
            elif line.startswith(TRACE_SETTINGS_CHANGED):
                self._trace_settings = line.removeprefix(TRACE_SETTINGS_CHANGED).strip()
                self._tell_others(worker, f"{SET_TRACE_SETTINGS} {self._trace_settings}")
                log.info("trace settings changed through worker %d: %s", worker.number, self._trace_settings)
            elif not line.startswith("cnnserve listening:"):
                print(line, flush=True)
        code = await worker.process.wait()
        self._exited(worker, code)

    def _spread_log_settings(self, source: _Worker, text: str) -> None:
        """A client changed one worker's log settings: the supervisor and every other worker take
        them, and so will each worker started later."""
        try:
            settings = logs.LogSettings(**json.loads(text))
        except (ValueError, TypeError) as exc:
            log.warning("worker %d sent log settings that are not: %r (%s)", source.number, text, exc)
            return
        logs.apply(settings)
        self._log_settings = text
        self._tell_others(source, f"{SET_LOG_SETTINGS} {text}")
        log.info("log settings changed through worker %d: %s", source.number, text)

    def _tell_others(self, source: _Worker, line: str) -> None:
        for worker in self.workers.values():
            if worker is not source:
                self._tell(worker, line)

    def _exited(self, worker: _Worker, code: int) -> None:
        forget_worker(self.metrics_dir, worker.pid)
        failure = worker.heartbeat.failure() if code == BOOT_FAILED else ""
        with contextlib.suppress(OSError):
            worker.heartbeat.path.unlink()
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self._stopping:
            if code != 0 and not self._forced:
                log.warning("worker %d (pid %d) exited with %s", worker.number, worker.pid, _status(code))
                self._failed = True
            return
        who = f"worker {worker.number} (pid {worker.pid})"
        if code == BOOT_FAILED:
            what = f"{who} could not start (exit status {code}): {failure or 'its log above says why'}"
        else:
            what = f"{who} exited with {_status(code)}" + (f" ({worker.killed})" if worker.killed else "")
            if not self._all_ready_once:
                what += " before the server was ready (its log above says why)"
        if not self._all_ready_once:
            self._give_up(what)
            return
        self._early_deaths = 0 if worker.ready else self._early_deaths + 1
        if self._early_deaths >= CRASH_LIMIT:
            self._give_up(f"{what}: {CRASH_LIMIT} replacements in a row died before they were ready")
            return
        log.error("%s; starting a replacement", what)
        self._tell_readiness()
        task = asyncio.get_running_loop().create_task(self._replace(worker.number))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _replace(self, number: int) -> None:
        try:
            await self._start(number)
        except OSError as exc:
            self._give_up(f"cannot start a replacement for worker {number}: {exc}")

    async def _listen_for_heartbeats(self) -> None:
        """Kill every worker silent for longer than ``--worker-timeout`` (0: never)."""
        timeout = self.settings.worker_timeout
        if timeout <= 0:
            return
        while True:
            await asyncio.sleep(beat_interval(timeout))
            for worker in list(self.workers.values()):
                if worker.killed or worker.process.returncode is not None:
                    continue
                try:
                    silence = worker.heartbeat.silence()
                except OSError:
                    continue  # it is exiting: its watcher deals with it
                if silence > timeout:
                    worker.killed = f"no heartbeat for {silence:.1f}s, more than --worker-timeout {timeout:g}s"
                    log.error("worker %d (pid %d): %s; killing it (SIGKILL)", worker.number, worker.pid, worker.killed)
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()

    def _tell_readiness(self) -> None:
        """Tell every worker whether all are ready; the first time they are, say so on stdout."""
        everyone = len(self.workers) == self.count and all(w.ready for w in self.workers.values())
        if everyone and not self._all_ready_once:
            self._all_ready_once = True
            models = next(iter(self.workers.values())).models
            log.info("all %d workers ready", self.count)
            print(f"cnnserve ready: {models}", flush=True)
        for worker in self.workers.values():
            self._tell(worker, PEERS_READY if everyone else PEERS_NOT_READY)

    @staticmethod
    def _tell(worker: _Worker, line: str) -> None:
        stdin = worker.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(line.encode() + b"\n")  # a line: the pipe never fills


def fit_on_gpu(settings: Settings, workers: int) -> int | None:
    """On CUDA, the workers whose sessions fit in the GPU's free memory (``auto`` is lowered to
    that); None, with the reason logged, when an explicit ``--workers`` does not fit."""
    free = gpu_memory.free_bytes()
    if free is None:
        log.warning("the GPU's free memory cannot be read (NVML): starting %d workers unchecked", workers)
        return workers
    need = gpu_memory.estimate(settings)
    count, refusal = gpu_memory.fitting_workers(settings.workers, workers, need.per_worker, free)
    fit = free // need.per_worker
    if refusal is not None:
        advice = f"use --workers {max(fit, 1)}, or fewer sessions per worker (--instances 1, --batch-shapes exact)"
        log.error("%s (%s) and %.1f GiB is free, so %d fit: %s", refusal, need.describe(), free / 2**30, fit, advice)
        return None
    log.info("GPU memory: %d workers at %s; %.1f GiB free", count, need.describe(), free / 2**30)
    return count


def plan(settings: Settings) -> int | None:
    """How many workers ``--workers`` comes to here (``auto`` resolved, fitted to the GPU's
    memory on CUDA); None, with the reason logged, when the server cannot start so."""
    _log_as_supervisor(settings)
    try:
        if settings.tls_cert:
            read_files(settings)  # a bad file refused once, not by every worker in turn
        count = worker_count(settings)
        workers = fit_on_gpu(settings, count) if CUDA in providers_for(settings.device) else count
    except (RuntimeUnavailable, RepositoryError, TlsError) as exc:  # as the single server says them
        log.error("%s", exc)
        return None
    if workers is not None and workers > 1 and settings.model_control_mode == "explicit":  # auto came to several
        log.error("%s", EXPLICIT_WORKERS.format(workers=workers))
        return None
    return workers


def supervise(settings: Settings, workers: int) -> int:
    """A supervisor and ``workers`` worker processes until SIGTERM or SIGINT; its exit status."""
    return asyncio.run(Supervisor(settings, workers).run())


def _log_as_supervisor(settings: Settings) -> None:
    logs.configure(settings.log_level, f"supervisor pid {os.getpid()} ")
