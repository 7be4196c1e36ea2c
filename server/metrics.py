"""Every Prometheus metric of the server, declared here and nowhere else (:data:`SERIES`, from which
the docs' metrics reference is generated).

Each :class:`Metrics` owns a registry, never prometheus_client's global one, so tests and several
servers in one process never share series. It also implements the batcher's observer protocol
(``cnnserve.server.batching.BatchObserver``), and :meth:`Metrics.start_http_server` serves ``/metrics``.

Series, all with a ``model`` label (``""`` for requests naming no known model, so that clients
cannot grow the label set without end):

- ``cnnserve_request_duration_seconds{model,rpc}``: arrival to reply of one RPC.
- ``cnnserve_queue_duration_seconds{model,version}``: time one request waited in the batcher.
- ``cnnserve_compute_duration_seconds{model,version}``: one ONNX Runtime run of a batch.
- ``cnnserve_copy_duration_seconds{model,version}``: copying one batch's inputs into its session's
  buffers before the run (host memory; on CUDA the copy to the device is part of the compute),
  for the batches that are copied: a one-item batch on the CPU runs from the request's own arrays.
  With it, queue + copy + compute is where a request's time went.
- ``cnnserve_batch_size{model,version}``: items in one ONNX Runtime run.
- ``cnnserve_requests_total{model,rpc,code}``: RPCs answered, by gRPC status code name.
- ``cnnserve_dropped_requests_total{model,version,reason}``: requests the batcher dropped before compute
  (``cancelled``, ``deadline``). The same calls are also counted in
  ``cnnserve_requests_total`` under their final code; this counter says the compute was skipped.
- ``cnnserve_inflight_requests{model}``: RPCs received and not yet answered.
- ``cnnserve_worker_requests{worker,pid}``: with several workers only, the RPCs each live worker
  answered (a gauge in prometheus_client's ``liveall`` mode), to see how connections spread.
- ``cnnserve_model_info{model,version,architecture,weight_layers,parameters,macs,provider,trained,
  state,batch_shapes}``: 1 per loaded version of each entry, failed ones included, so a dashboard
  can put latency beside depth and show which model is missing (why: the log and RepositoryIndex);
  an unloaded version's series goes.

The series of the batcher's side carry the ``version`` whose batcher (and session) did the work:
while a new version rolls out, both versions' series show the traffic moving. A request addresses
a model, not a version, so the request series (duration, count, in flight) carry the model only.

With several workers (``cnnserve.server.parallel``), each worker runs with ``PROMETHEUS_MULTIPROC_DIR``
set, so prometheus_client keeps its values in files there (its multiprocess mode), and the
supervisor serves their sum (:func:`workers_registry`) on the one metrics port.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# 100 us to 10 s in a 1-2-5 series: a LeNet-5 run on a GPU and a VGG-19 batch of 64 on a CPU both
# land in a bucket of their own, and three buckets a decade keep quantile estimates within ~2x.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0002, 0.0005,
    0.001, 0.002, 0.005,
    0.01, 0.02, 0.05,
    0.1, 0.2, 0.5,
    1.0, 2.0, 5.0,
    10.0,
)  # fmt: skip
# Powers of two, as batch sizes are usually chosen; 512 leaves room above the usual 256 maximum.
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# Every value comes from a small set (the repository's entries and their facts, the providers, the
# states, the padded sizes): no free text, such as a load failure's reason or the provider options
# a session reports, which go to the log and to RepositoryIndex instead.
INFO_LABELS = ("model", "version", "architecture", "weight_layers", "parameters", "macs", "provider", "trained",
               "state", "batch_shapes")  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One metric's declaration: the server's registry and the docs' metrics reference are made
    from these."""

    kind: type[MetricWrapperBase]
    name: str  # as exposed; a counter's ends in _total
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    multiprocess_mode: str = ""  # gauges with several workers: how the supervisor sums them

    @property
    def type(self) -> str:
        return str(self.kind._type)  # prometheus_client names the type on the class


# The batcher's series: each loaded version has a batcher of its own.
_BATCHER_LABELS = ("model", "version")
# One worker of several: its own count of answered RPCs, one series per live worker
# (prometheus_client adds the pid label), so that the balance between workers shows.
WORKER_REQUESTS = Series(
    Gauge,
    "cnnserve_worker_requests",
    "RPCs this worker answered (several workers only; one series per live worker, with its pid).",
    ("worker",),
    multiprocess_mode="liveall",
)
REQUEST_DURATION = Series(
    Histogram, "cnnserve_request_duration_seconds", "Arrival to reply of one RPC.", ("model", "rpc"), DURATION_BUCKETS
)
QUEUE_DURATION = Series(
    Histogram,
    "cnnserve_queue_duration_seconds",
    "Time one request waited in its model's batcher before its batch ran.",
    _BATCHER_LABELS,
    DURATION_BUCKETS,
)
COMPUTE_DURATION = Series(
    Histogram,
    "cnnserve_compute_duration_seconds",
    "One ONNX Runtime run of a batch.",
    _BATCHER_LABELS,
    DURATION_BUCKETS,
)
COPY_DURATION = Series(
    Histogram,
    "cnnserve_copy_duration_seconds",
    "Copying one batch's inputs into its session's buffers, in the worker thread, before the run.",
    _BATCHER_LABELS,
    DURATION_BUCKETS,
)
BATCH_SIZE = Series(
    Histogram, "cnnserve_batch_size", "Items in one ONNX Runtime run.", _BATCHER_LABELS, BATCH_SIZE_BUCKETS
)
REQUESTS = Series(
    Counter, "cnnserve_requests_total", "RPCs answered, by gRPC status code name.", ("model", "rpc", "code")
)
DROPPED = Series(
    Counter,
    "cnnserve_dropped_requests_total",
    "Queued requests the batcher dropped before compute (client cancelled, deadline passed).",
    ("model", "version", "reason"),
)
INFLIGHT = Series(
    Gauge, "cnnserve_inflight_requests", "RPCs received and not yet answered.", ("model",), multiprocess_mode="livesum"
)  # several workers: the sum over those alive
MODEL_INFO = Series(
    Gauge,
    "cnnserve_model_info",
    "1 for each repository entry, with the facts a dashboard puts beside its latency.",
    INFO_LABELS,
    multiprocess_mode="livemax",
)  # several workers: one series per model, not per worker
SERIES: tuple[Series, ...] = (REQUEST_DURATION, QUEUE_DURATION, COMPUTE_DURATION, COPY_DURATION, BATCH_SIZE,
                              REQUESTS, DROPPED, INFLIGHT, MODEL_INFO, WORKER_REQUESTS)  # fmt: skip


class Metrics:
    """The server's metrics in one registry (a fresh one unless ``registry`` is given)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, worker: int | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._worker_requests = None if worker is None else self._declare(WORKER_REQUESTS).labels(str(worker))
        self.request_duration = self._declare(REQUEST_DURATION)
        self.queue_duration = self._declare(QUEUE_DURATION)
        self.compute_duration = self._declare(COMPUTE_DURATION)
        self.copy_duration = self._declare(COPY_DURATION)
        self.batch_size = self._declare(BATCH_SIZE)
        self.requests = self._declare(REQUESTS)
        self.dropped = self._declare(DROPPED)
        self.inflight_requests = self._declare(INFLIGHT)
        self.model_info = self._declare(MODEL_INFO)
        self._info_lock = threading.Lock()
        self._info_labels: dict[tuple[str, str], tuple[str, ...]] = {}  # (model, version) -> its series
        # labels() validates and locks on every call; the request path asks for the same few
        # children thousands of times a second, so they are looked up once.
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}

    def _declare(self, series: Series) -> Any:
        """The metric ``series`` declares, in this registry."""
        options: dict[str, Any] = {"registry": self.registry}
        if series.buckets:
            options["buckets"] = series.buckets
        if series.multiprocess_mode:
            options["multiprocess_mode"] = series.multiprocess_mode
        # prometheus_client strips "_total" from a counter's name and appends it on exposition;
        # the declaration spells it out, so the exposed name is greppable.
        return series.kind(series.name, series.help, list(series.labels), **options)

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(*labels)
        return child

    # -- the RPC handlers' side ---------------------------------------------------------------

    def observe_request(self, model: str, rpc: str, code: str, seconds: float) -> None:
        """One answered RPC: its duration (arrival to reply) and its status code name, e.g. "OK"."""
        self._child(self.request_duration, model, rpc).observe(seconds)
        self._child(self.requests, model, rpc, code).inc()
        if self._worker_requests is not None:
            self._worker_requests.inc()

    def inflight(self, model: str) -> _Inflight:
        """Count an RPC as in flight for the duration of the ``with`` block."""
        # Keep the child: if remove_model() runs meanwhile, the decrement goes to the detached
        # child instead of re-creating the series at -1.
        return _Inflight(self._child(self.inflight_requests, model))

    # -- the model manager's side -------------------------------------------------------------

    def add_model(self, model: str, version: str = "") -> None:
        """Create the batcher series of ``model`` at ``version`` at zero when it becomes ready, so
        that each exists from the first scrape (Prometheus' advice on missing series): the copy
        histogram, for one, may stay empty, since a lone request on the CPU is run from its own
        arrays."""
        for metric in (self.queue_duration, self.compute_duration, self.copy_duration, self.batch_size):
            self._child(metric, model, version)

    def observer(self, version: str) -> _VersionObserver:
        """The batcher's observer for one version of a model: its series carry ``version``."""
        return _VersionObserver(self, version)

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
        batch_shapes: str = "",
    ) -> None:
        """Publish (or replace) the one ``cnnserve_model_info`` series of ``model`` at ``version``.

        ``provider`` is the execution provider the session actually uses (e.g.
        "CUDAExecutionProvider"), ``state`` "ready" or "failed", ``batch_shapes`` "exact" or the
        padded sizes ("1,8,32").
        """
        labels = (model, version, architecture, str(weight_layers), str(parameters), str(macs), provider,
                  "true" if trained else "false", state, batch_shapes)  # fmt: skip
        with self._info_lock:
            # Labels change with the state, and a stale "failed" series beside a "ready" one
            # would count the model twice.
            self._drop_info(model, version)
            self.model_info.labels(*labels).set(1)
            self._info_labels[(model, version)] = labels

    def remove_model_info(self, model: str, version: str) -> None:
        """``model`` at ``version`` is unloaded: its ``cnnserve_model_info`` series goes."""
        with self._info_lock:
            self._drop_info(model, version)

    def _drop_info(self, model: str, version: str) -> None:
        old = self._info_labels.pop((model, version), None)
        if old is not None:
            # Zeroed first: with several workers the old series stays in this worker's file.
            self.model_info.labels(*old).set(0)
            self.model_info.remove(*old)

    def remove_model(self, model: str) -> None:
        """Forget ``model``: its info series and every other series labelled with it."""
        self._children = {key: child for key, child in self._children.items() if key[1][0] != model}
        with self._info_lock:
            for key in [k for k in self._info_labels if k[0] == model]:
                self.model_info.remove(*self._info_labels.pop(key))
        for metric, labelnames in (
            (self.request_duration, ("model", "rpc")),
            (self.queue_duration, ("model", "version")),
            (self.compute_duration, ("model", "version")),
            (self.copy_duration, ("model", "version")),
            (self.batch_size, ("model", "version")),
            (self.requests, ("model", "rpc", "code")),
            (self.dropped, ("model", "version", "reason")),
            (self.inflight_requests, ("model",)),
        ):
            _remove_series(metric, labelnames, model)

    # -- the batcher's observer protocol (cnnserve.server.batching.BatchObserver) ----------------------
    # Metrics itself observes with version ""; a model's batcher gets observer(version).

    def on_batch(self, model: str, batch_size: int, compute_seconds: float, version: str = "") -> None:
        """One ONNX Runtime run of ``batch_size`` items took ``compute_seconds``."""
        self._child(self.batch_size, model, version).observe(batch_size)
        self._child(self.compute_duration, model, version).observe(compute_seconds)

    def on_dequeue(self, model: str, queue_seconds: float, version: str = "") -> None:
        """One request left the queue for a batch after waiting ``queue_seconds``."""
        self._child(self.queue_duration, model, version).observe(queue_seconds)

    def on_copy(self, model: str, copy_seconds: float, version: str = "") -> None:
        """One batch's inputs took ``copy_seconds`` to copy into the session's buffers."""
        self._child(self.copy_duration, model, version).observe(copy_seconds)

    def on_drop(self, model: str, reason: str, version: str = "") -> None:
        """One queued request was dropped before compute (``reason``: "cancelled", "deadline")."""
        self._child(self.dropped, model, version, reason).inc()

    # -- exposition ---------------------------------------------------------------------------

    def start_http_server(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:
        """Serve this registry at ``http://addr:port/metrics`` on a daemon thread; port 0 picks a
        free port (see :attr:`MetricsServer.port`). Call ``close()`` on the result to stop."""
        return serve_registry(self.registry, port, addr)


def serve_registry(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> MetricsServer:
    """Serve ``registry`` at ``http://addr:port/metrics`` on a daemon thread (port 0: a free one)."""
    try:
        server, thread = prometheus_client.start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:  # "[Errno 98] Address already in use" alone does not say which
        raise OSError(exc.errno, f"cannot serve metrics on {addr}:{port}: {exc.strerror}") from exc
    return MetricsServer(server, thread)


def workers_registry(path: str) -> CollectorRegistry:
    """The metrics of every worker process writing under ``path`` (prometheus_client's
    multiprocess mode: each worker runs with ``PROMETHEUS_MULTIPROC_DIR=path``), summed: counters
    and histograms over every worker that ever ran, ``cnnserve_inflight_requests`` over the live
    ones, ``cnnserve_model_info`` once per model."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


def forget_worker(path: str, pid: int) -> None:
    """A worker has exited: drop its live gauges (its counts stay in the sums)."""
    mark_process_dead(pid, path)


class _VersionObserver:
    """The batcher's observer protocol for one version of a model (see :meth:`Metrics.observer`)."""

    __slots__ = ("metrics", "version")

    def __init__(self, metrics: Metrics, version: str) -> None:
        self.metrics = metrics
        self.version = version

    def on_batch(self, model: str, batch_size: int, compute_seconds: float) -> None:
        self.metrics.on_batch(model, batch_size, compute_seconds, self.version)

    def on_dequeue(self, model: str, queue_seconds: float) -> None:
        self.metrics.on_dequeue(model, queue_seconds, self.version)

    def on_copy(self, model: str, copy_seconds: float) -> None:
        self.metrics.on_copy(model, copy_seconds, self.version)

    def on_drop(self, model: str, reason: str) -> None:
        self.metrics.on_drop(model, reason, self.version)


class _Inflight:
    """The context manager of ``Metrics.inflight`` (a class: this runs on every RPC, and a
    generator-based one costs a few microseconds more)."""

    __slots__ = ("gauge",)

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge

    def __enter__(self) -> None:
        self.gauge.inc()

    def __exit__(self, *exc_info: object) -> None:
        self.gauge.dec()


class MetricsServer:
    """A running ``/metrics`` endpoint (prometheus_client's WSGI server and its thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port, also when 0 was asked for."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving, free the port and join the thread; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.server.shutdown()  # returns once serve_forever() has left its loop (<= 0.5 s)
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _remove_series(metric: MetricWrapperBase, labelnames: tuple[str, ...], model: str) -> None:
    # MetricWrapperBase.remove_by_labels() is recent (2025) and pyproject allows
    # prometheus-client 0.20, so find the label values in what the metric exposes.
    values = {
        tuple(sample.labels[name] for name in labelnames)
        for family in metric.collect()
        for sample in family.samples
        if sample.labels.get("model") == model
    }
    for labelvalues in values:
        metric.remove(*labelvalues)
