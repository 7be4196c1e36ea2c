"""Every Prometheus metric of the server, defined here and nowhere else (names in DESIGN.md).

Each :class:`Metrics` owns its registry, so tests (and several servers in one process) never
share counters. It also implements the batcher's observer protocol.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# 100 us to 10 s in a 1-2-5 series: a LeNet run and a VGG-19 batch of 32 both resolve.
DURATION_BUCKETS = (
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "cnnserve_request_duration_seconds",
            "Arrival to reply of one RPC",
            ["model", "rpc"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "cnnserve_queue_duration_seconds",
            "Time a request waited in its model's batcher before its batch ran",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "cnnserve_compute_duration_seconds",
            "One ONNX Runtime run of a batch",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "cnnserve_batch_size", "Items in one ONNX Runtime run", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.requests = Counter(
            "cnnserve_requests", "RPCs answered, by gRPC status code", ["model", "rpc", "code"], registry=r
        )
        self.inflight_requests = Gauge(
            "cnnserve_inflight_requests", "RPCs received and not yet answered", ["model"], registry=r
        )
        self.model_info = Gauge(
            "cnnserve_model_info",
            "1 for each model in the repository, with what a dashboard puts beside its latency",
            ["model", "version", "architecture", "weight_layers", "parameters", "macs", "provider", "trained", "state",
             "reason"],
            registry=r,
        )  # fmt: skip
        self.dropped = Counter(
            "cnnserve_dropped_requests",
            "Queued requests dropped before compute (client cancelled, deadline passed)",
            ["model", "reason"],
            registry=r,
        )
        self._info_labels: dict[str, tuple[str, ...]] = {}

    def observe_request(self, model: str, rpc: str, code: str, seconds: float) -> None:
        self.request_duration.labels(model, rpc).observe(seconds)
        self.requests.labels(model, rpc, code).inc()

    @contextlib.contextmanager
    def inflight(self, model: str) -> Iterator[None]:
        gauge = self.inflight_requests.labels(model)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def set_model_info(
        self,
        *,
        model: str,
        version: str,
        architecture: str,
        weight_layers: int,
        parameters: int,
        macs: int,
        provider: str,
        trained: bool,
        state: str,
        reason: str = "",
    ) -> None:
        self.remove_model(model)  # one series per model: labels change when its state does
        labels = (model, version, architecture, str(weight_layers), str(parameters), str(macs), provider,
                  "true" if trained else "false", state, reason)  # fmt: skip
        self.model_info.labels(*labels).set(1)
        self._info_labels[model] = labels

    def remove_model(self, model: str) -> None:
        labels = self._info_labels.pop(model, None)
        if labels is not None:
            self.model_info.remove(*labels)

    # The batcher's observer protocol.
    def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None:
        self.batch_size.labels(model).observe(batch_size)
        self.compute_duration.labels(model).observe(compute_seconds)

    def on_dequeue(self, model: str, queue_seconds: float) -> None:
        self.queue_duration.labels(model).observe(queue_seconds)

    def on_drop(self, model: str, reason: str) -> None:
        self.dropped.labels(model, reason).inc()


@dataclass
class MetricsServer:
    """The /metrics HTTP endpoint (prometheus_client's, on its own thread)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(metrics: Metrics, host: str, port: int) -> MetricsServer:
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server, thread)
