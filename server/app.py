"""The server's lifecycle: listen, load, serve, and on SIGTERM/SIGINT drain and exit 0.

Order on start: metrics endpoint, gRPC port (live, NOT_SERVING), load and warm every model,
then SERVING. A worker of several loads first and listens after: its port is shared, and the
kernel would hand it connections while it loads. Order on stop: health NOT_SERVING and the data
plane refuses new work, gRPC stops taking calls and gives the accepted ones ``grace_seconds``,
batchers drain, sessions close, metrics endpoint closes. Each step is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from cnnserve.repository import RepositoryError
from cnnserve.server import logs
from cnnserve.server.dataplane import DataPlane
from cnnserve.server.grpc import server as grpc_server
from cnnserve.server.metrics import Metrics, MetricsServer
from cnnserve.server.model_manager import ModelManager
from cnnserve.server.rest import server as rest_server
from cnnserve.server.rest.server import HttpServer
from cnnserve.server.runtime.devices import CUDA, RuntimeUnavailable, cuda_problem, providers_for
from cnnserve.server.security.tls import CertificateStore, TlsError
from cnnserve.server.services.classifier import Classifier
from cnnserve.server.services.policy import PolicyService
from cnnserve.server.settings import Settings
from cnnserve.server.tracing.tracer import Tracer

log = logging.getLogger("cnnserve.server")


def check_cuda_graphs(settings: Settings) -> None:
    """``--cuda-graphs on`` refused before listening where it cannot work."""
    if settings.batch_shapes == "exact":
        raise RuntimeUnavailable(
            "--cuda-graphs on: a CUDA graph replays one input shape; use --batch-shapes padded (or auto)"
        )
    if CUDA not in providers_for(settings.device):
        why = "--device cpu" if settings.device == "cpu" else cuda_problem() or "this onnxruntime has no CUDA provider"
        raise RuntimeUnavailable(f"--cuda-graphs on needs the CUDA provider, which this server cannot use: {why}")


class Server:
    def __init__(self, settings: Settings, metrics: Metrics | None = None, *, worker: int | None = None) -> None:
        self.settings = settings
        # One worker of several (cnnserve.server.parallel), by its number: it shares the port, and is
        # ready only once the supervisor says that every worker is.
        self.worker = worker
        self.metrics = metrics or Metrics(worker=worker)
        self.models = ModelManager(settings, self.metrics)
        self.plane = DataPlane(self.models, Tracer(settings.trace_config, worker))
        self.plane.peers_ready = worker is None
        self.classifier = Classifier(
            self.plane,
            max_images=settings.max_images_per_request,
            max_pixels=settings.max_image_pixels,
            threads=settings.decode_threads,
        )
        self.policies = PolicyService(self.plane, threads=settings.decode_threads)
        self.health = health.aio.HealthServicer()
        self.grpc: grpc.aio.Server | None = None
        self.metrics_server: MetricsServer | None = None
        self.http: HttpServer | None = None
        self.grpc_port = 0
        self.http_port = -1  # off
        self.tls: CertificateStore | None = None
        self.failure = ""  # why the start failed, for a supervisor to read
        self._stop = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        if s.device == "cuda":
            providers_for("cuda")  # fail loudly before listening: --device cuda must mean CUDA
        if s.cuda_graphs == "on":
            check_cuda_graphs(s)
        # TLS files checked before anything listens: a bad one is a refusal to start, naming it.
        self.tls = CertificateStore(s) if s.tls_cert else None
        if s.metrics_port >= 0:
            self.metrics_server = self.metrics.start_http_server(s.metrics_port, s.metrics_host or s.host)
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        started = time.perf_counter()
        if self.worker is None:
            await self._listen()
        else:
            log.info("loading %s; listening once ready (the port is shared)", s.repo)
        self.models.on_change = self._publish_health
        await self.models.start()
        self.plane.loaded = True
        if self.worker is not None:
            await self._listen()
        await self._publish_health()
        ready = sorted(m.name for m in self.models.models.values() if m.ready)
        failed = sorted(m.name for m in self.models.models.values() if not m.ready)
        log.info(
            "ready in %.1fs: %d model(s) serving (%s)%s",
            time.perf_counter() - started,
            len(ready),
            ", ".join(ready) or "none",
            f"; failed: {', '.join(failed)}" if failed else "",
        )
        print(f"cnnserve ready: {', '.join(ready) or 'no models'}", flush=True)

    async def _listen(self) -> None:
        """Take connections on the gRPC and HTTP ports (health says NOT_SERVING until the models
        are ready), and say where on stdout."""
        s = self.settings
        shared = self.worker is not None  # one worker of several: the port is shared
        self.grpc, self.grpc_port = grpc_server.build(
            s, self.plane, self.classifier, self.policies, self.metrics, self.health, reuse_port=shared, tls=self.tls
        )
        await self.grpc.start()
        http_address = "off"
        if s.http_port >= 0:
            self.http = HttpServer(
                rest_server.build(s, self.plane, self.metrics, self.classifier, self.policies),
                grace_seconds=s.grace_seconds,
            )
            self.http_port = await self.http.start(s.host, s.http_port, reuse_port=shared, tls=self.tls)
            http_address = f"{s.host}:{self.http_port}"
        metrics_address = "off"
        if self.metrics_server is not None:
            metrics_address = f"{s.metrics_host or s.host}:{self.metrics_server.port}"
        # Tests and scripts read this line to learn the ports (port 0 picks free ones).
        print(f"cnnserve listening: grpc={s.host}:{self.grpc_port} metrics={metrics_address} http={http_address}",
              flush=True)  # fmt: skip
        log.info("gRPC on %s:%d, HTTP on %s, metrics on %s; serving %s", s.host, self.grpc_port, http_address,
                 metrics_address, s.repo)  # fmt: skip

    async def _publish_health(self) -> None:
        """The health service's statuses, the server's ("") and each model's, from the data plane."""
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        for model in self.models.models.values():
            await self.health.set(model.name, serving if model.ready and self.plane.peers_ready else not_serving)
        await self.health.set("", serving if self.plane.ready() else not_serving)

    async def set_peers_ready(self, ready: bool) -> None:
        """One worker of several: whether every other worker is ready (the supervisor says so)."""
        self.plane.peers_ready = ready
        if self.plane.loaded and not (self.plane.draining or self.plane.leaving):
            await self._publish_health()

    def request_stop(self) -> None:
        self._stop.set()

    def renew_certificates(self) -> None:
        """SIGHUP: read the TLS files again; new connections get them, open ones keep theirs."""
        if self.tls is None:
            log.info("SIGHUP: no TLS files to renew")
            return
        self.tls.reload()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        grace, drain = self.settings.grace_seconds, self.settings.drain_seconds
        if drain > 0 and self.plane.loaded:
            # Out of rotation first, still serving: a balancer that sends a few more calls (nginx
            # until it reloads, Kubernetes until its endpoints change) gets them answered.
            log.info("shutting down: health NOT_SERVING, still taking requests for %gs (--drain-seconds)", drain)
            self.plane.leaving = True  # ServerReady, ModelReady and /v2/health/ready: false
            await self.health.enter_graceful_shutdown()
            await asyncio.sleep(drain)
        log.info("shutting down: health NOT_SERVING, refusing new requests")
        self.plane.draining = True
        await self.health.enter_graceful_shutdown()
        # Classify and Policy calls accepted before this point may still be decoding images or
        # reading positions: their work must reach the batchers before those close.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(self.classifier.drain(), self.policies.drain())
        if self.grpc is not None:
            log.info("waiting up to %.0fs for accepted requests", grace)
            # Batchers drain while gRPC and HTTP wait: the calls they wait for are being computed.
            await asyncio.gather(self.grpc.stop(grace), *([self.http.stop()] if self.http else []), self.models.close())
        else:
            await self.models.close()
        self.classifier.close()
        self.policies.close()
        await self.plane.tracer.close()
        log.info("batchers drained, sessions, image decoders and feature threads closed")
        if self.metrics_server is not None:
            self.metrics_server.close()
        log.info("stopped")


Companion = Callable[[Server], Coroutine[Any, Any, None]]


async def serve(settings: Settings, *, worker: int | None = None, companion: Companion | None = None) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean stop, 1 when the server could not start.
    ``companion`` runs beside it (a worker's link to its supervisor) and is cancelled at the end."""
    server = Server(settings, worker=worker)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    loop.add_signal_handler(signal.SIGHUP, server.renew_certificates)
    beside = loop.create_task(companion(server)) if companion else None
    try:
        return await _serve(server)
    finally:
        if beside is not None:
            beside.cancel()
            await asyncio.gather(beside, return_exceptions=True)


async def _serve(server: Server) -> int:
    try:
        startup = asyncio.create_task(server.start())
        stop = asyncio.create_task(server.wait())
        await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
        if startup.done():
            startup.result()  # raises if the start failed
            await stop
        else:
            log.info("signal during start-up")
            startup.cancel()
            await asyncio.gather(startup, return_exceptions=True)
    except (RepositoryError, RuntimeUnavailable, OSError, TlsError) as exc:
        log.error("%s", exc)
        server.failure = str(exc)
        await server.stop()
        return 1
    await server.stop()
    return 0


def run(settings: Settings, *, worker: int | None = None, companion: Companion | None = None) -> int:
    """:func:`serve` in a fresh event loop, logging to stderr; ``worker``: this process's number
    among several (it shares the port, and its log lines say which worker and pid they are from)."""
    logs.configure(settings.log_level, "" if worker is None else f"worker {worker} pid {os.getpid()} ")
    return asyncio.run(serve(settings, worker=worker, companion=companion))
