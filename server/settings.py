"""Every ``cnnserve serve`` setting in one typed place.

Precedence: a command-line flag wins over its ``CNNSERVE_*`` environment variable, which wins over
the default. Each field's variable is ``CNNSERVE_`` and the field name in capitals (``grpc_port``:
``CNNSERVE_GRPC_PORT``); an empty variable counts as unset, so a compose file may pass ``${X:-}``.
``CNNSERVE_MODELS`` is comma-separated, ``--model`` repeatable (or comma-separated too); when any
``--model`` is given, the variable is ignored, not merged.

Invalid values fail with the source and the expectation named, e.g.
``CNNSERVE_GRPC_PORT='abc': expected an integer port 0-65535`` (also when a flag overrides the
variable: a typo should not hide until the flag is dropped); bad flags get argparse's usual error
(exit status 2) with the same expectation.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

KIB, MIB, GIB = 1024, 1024**2, 1024**3
DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
BATCH_SHAPES = ("auto", "exact", "padded")
CONV_ALGO_SEARCHES = ("exhaustive", "heuristic", "default")
ARENA_STRATEGIES = ("same_as_requested", "next_power_of_two")
COPY_STREAMS = ("default", "separate")
CONTROL_MODES = ("none", "explicit", "poll")
# Triton's groups of protocols that a header may restrict (cnnserve.v1 belongs to inference).
GROUPS = ("health", "metadata", "inference", "model-repository", "statistics")
# A load or unload call reaches one worker of several (connections are spread, not calls).
EXPLICIT_WORKERS = (
    "model_control_mode explicit with {workers} workers: a RepositoryModelLoad reaches one worker "
    "only; use --model-control-mode poll (each worker follows the repository) or one worker"
)


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names the variable or field."""


@dataclass(frozen=True)
class Settings:
    """What ``cnnserve serve`` runs with. Build it with :meth:`from_args` or :meth:`from_env`;
    direct construction is checked the same way."""

    repo: str = "exported"
    """Model repository folder (CNNSERVE_REPO, --repo)."""
    host: str = "0.0.0.0"
    """Address both ports bind to (CNNSERVE_HOST, --host)."""
    grpc_port: int = 8001
    """gRPC port, Triton's default; 0 picks a free one (CNNSERVE_GRPC_PORT, --grpc-port)."""
    http_port: int = 8000
    """KServe V2 REST port, Triton's default; 0 picks a free one, -1 turns HTTP off
    (CNNSERVE_HTTP_PORT, --http-port)."""
    metrics_port: int = 8002
    """Prometheus ``/metrics`` port, Triton's default; 0 picks a free one, -1 turns the endpoint
    off (CNNSERVE_METRICS_PORT, --metrics-port)."""
    device: str = "auto"
    """``auto``: CUDA where a session can use it, else CPU; ``cpu``; ``cuda``: fail at start
    unless CUDA works (CNNSERVE_DEVICE, --device)."""
    intra_op_threads: int = 0
    """ONNX Runtime threads inside one operator; 0 = its default, one per physical core
    (CNNSERVE_INTRA_OP_THREADS, --intra-op-threads)."""
    inter_op_threads: int = 0
    """ONNX Runtime threads across operators (parallel execution mode only); 0 = its default
    (CNNSERVE_INTER_OP_THREADS, --inter-op-threads)."""
    ort_spinning: str = "off"
    """Whether ONNX Runtime's intra-op threads spin-wait for work between runs: "on" or "off".
    Off by default: on a small CPU machine the spinning threads steal the cores the gRPC front
    end needs (measured +10% LeNet-5 requests/s on two cores with it off); turn it on for a
    CPU box with cores to spare (CNNSERVE_ORT_SPINNING, --ort-spinning)."""
    batch_shapes: str = "auto"
    """``padded``: every batch is zero-padded to the smallest of the preferred batch sizes and
    max_batch_size that holds it, and each such size has sessions of its own, so that no session
    ever sees a second shape (with cuDNN 9 a shape change rebuilds every convolution plan);
    ``exact``: batches run at their own size; ``auto``: padded on CUDA, exact on the CPU
    (CNNSERVE_BATCH_SHAPES, --batch-shapes)."""
    cuda_conv_algo_search: str = "exhaustive"
    """How cuDNN picks each convolution's algorithm: ``exhaustive`` times them all once per
    session and shape (at warm-up, with padded batch shapes), ``heuristic`` asks cuDNN's
    heuristics, ``default`` takes the default algorithm; ONNX Runtime's default is exhaustive
    (CNNSERVE_CUDA_CONV_ALGO_SEARCH, --cuda-conv-algo-search)."""
    cuda_memory_limit: int = 0
    """Bytes each CUDA session's memory arena may grow to; 0 = no limit, ONNX Runtime's default
    (CNNSERVE_CUDA_MEMORY_LIMIT, --cuda-memory-limit; a KiB, MiB or GiB suffix may follow)."""
    cuda_arena_strategy: str = "same_as_requested"
    """How a CUDA arena grows: ``same_as_requested`` by what is asked, ``next_power_of_two`` by
    powers of two (ONNX Runtime's default; wasteful with a session per batch shape)
    (CNNSERVE_CUDA_ARENA_STRATEGY, --cuda-arena-strategy)."""
    cuda_copy_stream: str = "default"
    """``default``: host-device copies on the compute stream (ONNX Runtime's default);
    ``separate``: on streams of their own, which ONNX Runtime warns may race for some models
    (CNNSERVE_CUDA_COPY_STREAM, --cuda-copy-stream)."""
    cuda_tf32: str = "off"
    """``on`` lets convolutions and matrix products on Ampere and later GPUs run in TF32 (10-bit
    mantissas: faster, less exact); off by default so float32 models compute in float32
    (CNNSERVE_CUDA_TF32, --cuda-tf32)."""
    cuda_graphs: str = "off"
    """``on``: each CUDA session captures its run as a CUDA graph at warm-up and replays it, which
    saves the launch of every kernel (most of a small batch's time); needs the CUDA provider and
    padded batch shapes, and a model whose every node runs on CUDA (one that cannot be captured
    fails to load, saying why) (CNNSERVE_CUDA_GRAPHS, --cuda-graphs)."""
    workers: int | None = 1
    """Front-end worker processes, each a complete server (event loop, batchers, sessions) on the
    same gRPC port (``SO_REUSEPORT``), under a supervisor that serves the summed metrics and
    replaces a worker that dies; 1 = one process, no supervisor; None (``auto``) = one per two
    cores on the CPU, and on CUDA one per core up to 4 (CNNSERVE_WORKERS, --workers)."""
    worker_timeout: float = 30.0
    """Seconds a worker of several may go without a heartbeat (its event loop touches a file every
    second) before the supervisor kills it with SIGKILL and starts a replacement, as gunicorn's
    ``--timeout``: a worker that hangs (a deadlock, a stuck native call on its event loop, SIGSTOP)
    would otherwise keep its connections and answer nothing; 0 = never (CNNSERVE_WORKER_TIMEOUT,
    --worker-timeout)."""
    instances: int | None = None
    """Model instances, each with its session(s) and a thread of its own; None (``auto``) = 2 on
    CUDA, so that one batch is copied in while another computes, and 1 on the CPU, where the
    cores are already busy with one (CNNSERVE_INSTANCES, --instances)."""
    max_batch_size: int | None = None
    """Override every model's ``max_batch_size``; None = each model's config.json
    (CNNSERVE_MAX_BATCH_SIZE, --max-batch-size)."""
    max_queue_delay_us: int | None = None
    """Override every model's ``max_queue_delay_us``; None = each model's config.json
    (CNNSERVE_MAX_QUEUE_DELAY_US, --max-queue-delay-us)."""
    inline_compute_us: int = 250
    """A lone one-item request (its model idle, nothing else in flight for it, the model's last
    run finished more than 0.6 ms before) runs on the event loop's own thread, skipping the hop to
    a worker thread and back, when the model's lone request computes in at most this many
    microseconds (measured at warm-up and logged; LeNet-5 takes ~100 us, the hop about as much on
    two cores); on the CPU on a session of its own with one intra-op thread; 0 = never
    (CNNSERVE_INLINE_COMPUTE_US, --inline-compute-us)."""
    max_queue_size: int | None = None
    """Requests one model may queue before RESOURCE_EXHAUSTED; None = the batcher's default, eight
    times max_batch_size (CNNSERVE_MAX_QUEUE_SIZE, --max-queue-size)."""
    max_queue_bytes: int = 1 * GIB
    """Bytes of inputs one model may hold queued before RESOURCE_EXHAUSTED, whatever the request
    count: 256 queued requests of 32 float32 224x224 images would be 4.9 GB
    (CNNSERVE_MAX_QUEUE_BYTES, --max-queue-bytes; a KiB, MiB or GiB suffix may follow)."""
    max_concurrent_rpcs: int = 1024
    """RPCs the gRPC server handles at once (streams included); beyond that gRPC itself answers
    RESOURCE_EXHAUSTED ("Concurrent RPC limit exceeded!"), so that a flood of large messages
    cannot grow the process without end. The HTTP front end takes as many requests again,
    counted apart, and answers 429 beyond them (health checks are never refused); 0 = no limit
    (CNNSERVE_MAX_CONCURRENT_RPCS, --max-concurrent-rpcs)."""
    grpc_max_concurrent_streams: int = 256
    """Calls one gRPC connection may have open at once (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS);
    a client's calls beyond wait in the client for a free stream, they are not refused
    (CNNSERVE_GRPC_MAX_CONCURRENT_STREAMS, --grpc-max-concurrent-streams)."""
    grpc_keepalive_time: int = 7_200_000
    """Milliseconds of quiet after which the server pings a client to see it is there, as
    Triton's --grpc-keepalive-time (CNNSERVE_GRPC_KEEPALIVE_TIME, --grpc-keepalive-time)."""
    grpc_keepalive_timeout: int = 20_000
    """Milliseconds the server waits for that ping's answer before it closes the connection
    (CNNSERVE_GRPC_KEEPALIVE_TIMEOUT, --grpc-keepalive-timeout)."""
    grpc_min_ping_interval: int = 300_000
    """Milliseconds a client must leave between its pings while no call is open; a client that
    pings more often earns a strike (CNNSERVE_GRPC_MIN_PING_INTERVAL,
    --grpc-http2-min-recv-ping-interval-without-data)."""
    grpc_http2_max_ping_strikes: int = 2
    """Strikes after which the server closes the connection with GOAWAY ``too_many_pings``, as
    gRPC's keepalive policy has it; 0 = no limit (CNNSERVE_GRPC_HTTP2_MAX_PING_STRIKES,
    --grpc-http2-max-ping-strikes)."""
    grpc_max_connection_idle: int = 0
    """Milliseconds a gRPC connection may stay without calls before the server closes it
    (GOAWAY; the client reconnects when it next calls); 0 = forever
    (CNNSERVE_GRPC_MAX_CONNECTION_IDLE, --grpc-max-connection-idle)."""
    grpc_max_connection_age: int = 0
    """Milliseconds after which a gRPC connection is asked to end (GOAWAY) and the client
    reconnects, which lets a balancer spread long-lived clients again; 0 = never
    (CNNSERVE_GRPC_MAX_CONNECTION_AGE, --grpc-max-connection-age)."""
    grpc_max_connection_age_grace: int = 30_000
    """Milliseconds the calls open on an aged connection get to finish before it is closed
    (CNNSERVE_GRPC_MAX_CONNECTION_AGE_GRACE, --grpc-max-connection-age-grace)."""
    max_message_bytes: int = 64 * MIB
    """Largest gRPC message either way, and largest HTTP request body (413 beyond it). gRPC's
    own 4 MiB holds fewer than seven float32 224x224x3 images; gRPC takes at most 2 GiB - 1
    (CNNSERVE_MAX_MESSAGE_BYTES, --max-message-bytes; a KiB, MiB or GiB suffix may follow the
    number)."""
    max_images_per_request: int = 64
    """Most images one Classify request may carry (CNNSERVE_MAX_IMAGES_PER_REQUEST,
    --max-images-per-request)."""
    max_image_pixels: int = 50_000_000
    """Largest image Classify decodes, in pixels (width x height), checked from the image's
    header before any pixel is decoded: a 50-megapixel photo passes, a decompression bomb does
    not (CNNSERVE_MAX_IMAGE_PIXELS, --max-image-pixels)."""
    decode_threads: int = 0
    """Threads that decode and preprocess Classify images, and threads that read Policy positions
    into feature planes, off the event loop; 0 = one per CPU (CNNSERVE_DECODE_THREADS,
    --decode-threads)."""
    grace_seconds: float = 10.0
    """On SIGTERM/SIGINT, how long accepted requests get to finish (CNNSERVE_GRACE_SECONDS,
    --grace-seconds)."""
    drain_seconds: float = 0.0
    """On SIGTERM/SIGINT, how long the server goes on taking new requests while health says
    NOT_SERVING and readiness is false, before it refuses them and the grace period begins: time
    for a balancer to take it out of rotation (Kubernetes' preStop sleep); 0 = refuse at once
    (CNNSERVE_DRAIN_SECONDS, --drain-seconds)."""
    log_level: str = "info"
    """debug, info, warning or error (CNNSERVE_LOG_LEVEL, --log-level)."""
    models: tuple[str, ...] = ()
    """Load only these repository entries; empty = every entry (CNNSERVE_MODELS, --model)."""
    model_control_mode: str = "none"
    """Triton's model control: ``none`` loads every entry at start and never changes; ``explicit``
    loads the ``load_models`` at start and then what RepositoryModelLoad asks for (and unloads on
    RepositoryModelUnload); ``poll`` loads every entry and follows the repository: a new version
    folder or a changed entry is loaded beside the serving one and swapped in when ready, a
    removed entry unloaded (CNNSERVE_MODEL_CONTROL_MODE, --model-control-mode)."""
    load_models: tuple[str, ...] = ()
    """With ``explicit`` model control, the entries loaded at start; ``*`` = every entry
    (CNNSERVE_LOAD_MODELS, comma-separated; --load-model, repeatable)."""
    repository_poll_seconds: float = 15.0
    """With ``poll`` model control, seconds between two looks at the repository
    (CNNSERVE_REPOSITORY_POLL_SECONDS, --repository-poll-seconds)."""
    tls_cert: str = ""
    """PEM certificate (chain) both ports present, gRPC and HTTP; with ``tls_key``, TLS on both;
    empty = clear text (CNNSERVE_TLS_CERT, --tls-cert). Renewed by replacing the files and
    sending SIGHUP."""
    tls_key: str = ""
    """PEM private key of ``tls_cert`` (CNNSERVE_TLS_KEY, --tls-key)."""
    tls_client_ca: str = ""
    """PEM CA certificate(s): every client must present a certificate they signed (mutual TLS);
    empty = no client certificates asked for (CNNSERVE_TLS_CLIENT_CA, --tls-client-ca)."""
    metrics_host: str = ""
    """Address the metrics endpoint binds to, e.g. 127.0.0.1 to keep it off the network; empty =
    ``host`` (CNNSERVE_METRICS_HOST, --metrics-host)."""
    grpc_restricted_protocol: tuple[str, ...] = field(default=(), repr=False)  # keys: never in a repr
    """Triton's ``GROUPS:KEY=VALUE`` (groups health, metadata, inference, model-repository,
    statistics; comma-separated): their gRPC calls need the header ``triton-grpc-protocol-KEY:
    VALUE``, others get UNAVAILABLE; each group in one entry at most (CNNSERVE_GRPC_RESTRICTED_PROTOCOL,
    several separated by ``;``; --grpc-restricted-protocol, repeatable)."""
    http_restricted_api: tuple[str, ...] = field(default=(), repr=False)
    """The same for HTTP, as Triton's ``--http-restricted-api``: the header is ``KEY: VALUE``,
    others get 403 (CNNSERVE_HTTP_RESTRICTED_API; --http-restricted-api, repeatable)."""
    model_name: str = ""
    """When the repository folder is itself one entry (``config.json`` and version folders in
    it, as KServe's storage initializer fills ``/mnt/models``), serve it under this name; empty =
    the name in its config.json (CNNSERVE_MODEL_NAME, --model-name)."""

    def __post_init__(self) -> None:
        for option in OPTIONS:
            value = getattr(self, option.field)
            if not option.check(value):
                raise SettingsError(f"{option.field}={option.shown(value)}: expected {option.expected}")
        if self.load_models and self.model_control_mode != "explicit":
            raise SettingsError(
                f"load_models {','.join(self.load_models)!r}: only with model_control_mode explicit "
                f"(--model-control-mode explicit); mode {self.model_control_mode!r} loads every entry"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("tls_cert and tls_key: give both (--tls-cert and --tls-key) or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise SettingsError("tls_client_ca: mutual TLS needs TLS: give --tls-cert and --tls-key too")
        if self.model_control_mode == "explicit" and self.workers is not None and self.workers > 1:
            raise SettingsError(EXPLICIT_WORKERS.format(workers=self.workers))

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_port >= 0

    def batching_overrides(self) -> dict[str, int]:
        """The per-model config.json values these settings replace (for repository.scan)."""
        overrides = {"max_batch_size": self.max_batch_size, "max_queue_delay_us": self.max_queue_delay_us}
        return {k: v for k, v in overrides.items() if v is not None}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Defaults, overridden by the ``CNNSERVE_*`` variables present in ``environ``."""
        return cls(**_from_environ(environ))

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Settings:
        """Like :meth:`from_env`, overridden by the flags given (those of :func:`add_arguments`;
        a flag left out is None in ``args``)."""
        values = _from_environ(environ)
        for option in OPTIONS:
            given = getattr(args, option.field, None)
            if given is not None:
                values[option.field] = tuple(given) if option.field in LISTS else given
        return cls(**values)


# -- parsing and checking, one entry per field ------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


def _lower(text: str) -> str:
    return text.strip().lower()


def _parse_int(text: str) -> int:
    return int(text.strip())  # int() accepts "_" separators: "67_108_864"


_SIZE = re.compile(r"\s*([0-9_]+)\s*(KiB|MiB|GiB)?\s*", re.IGNORECASE)


def _parse_count_or_auto(text: str) -> int | None:
    return None if text.strip().lower() == "auto" else _parse_int(text)


def _parse_bytes(text: str) -> int:
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(text)
    unit = {"kib": KIB, "mib": MIB, "gib": GIB}.get((match[2] or "").lower(), 1)
    return int(match[1]) * unit


def _parse_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:  # "--model ''" must not quietly mean "every model"
        raise ValueError(text)
    return names


def _words(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


@dataclass(frozen=True)
class _Option:
    field: str
    flag: str
    metavar: str
    parse: Callable[[str], Any]  # raises ValueError on text that is not even of the right kind
    check: Callable[[Any], bool]  # the value's range, also applied to directly built Settings
    expected: str  # completes "...: expected "
    help: str
    shown_default: str = ""  # for the help text where repr(default) says little
    secret: bool = False  # its values carry keys: never echoed in a message

    def shown(self, value: object) -> str:
        return "(value hidden: it holds a key)" if self.secret else repr(value)

    @property
    def variable(self) -> str:
        return "CNNSERVE_" + self.field.upper()

    def convert(self, text: str) -> Any:
        """Text from a variable or a flag to a checked value; ValueError when it will not do."""
        value = self.parse(text)
        if not self.check(value):
            raise ValueError(text)
        return value


def _port(low: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and low <= v <= 65535


def _at_least(low: int, optional: bool = False) -> Callable[[Any], bool]:
    return lambda v: (optional and v is None) or (_is_int(v) and v >= low)


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _path_or_empty(v: Any) -> bool:
    return isinstance(v, str)  # whether the file is usable is checked at start, naming the flag


_RESTRICTION = re.compile(r"([a-z,-]+):([A-Za-z0-9_-]+)=(.+)")


def parse_restriction(text: str) -> tuple[tuple[str, ...], str, str]:
    """``GROUPS:KEY=VALUE`` as (groups, key, value); ValueError when it is not that."""
    match = _RESTRICTION.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    groups = tuple(g for g in match[1].split(",") if g)
    if not groups or any(g not in GROUPS for g in groups):
        raise ValueError(text)
    return groups, match[2], match[3]


def _parse_restrictions(text: str) -> tuple[str, ...]:
    entries = tuple(e.strip() for e in text.split(";") if e.strip())
    for entry in entries:
        parse_restriction(entry)
    return entries


def _restrictions(v: Any) -> bool:
    if not isinstance(v, tuple):
        return False
    try:
        groups = [g for entry in v for g in parse_restriction(entry)[0]]
    except ValueError:
        return False
    return len(groups) == len(set(groups))  # a group in one entry at most, as Triton has it


_ANY_INT = "an integer, 0 or more"
_MS = "an integer number of milliseconds, 1 or more"
_MS0 = "an integer number of milliseconds, 0 or more"
_POSITIVE = "an integer, 1 or more"
_CONFIG = "each model's config.json"

OPTIONS: tuple[_Option, ...] = (
    # field, flag, metavar, parse, check, expected, help[, shown default]
    _Option("repo", "--repo", "DIR", str.strip, _text, "a folder path", "model repository folder"),
    _Option("host", "--host", "ADDR", str.strip, _text, "an address or host name", "address both ports bind to"),
    _Option("grpc_port", "--grpc-port", "PORT", _parse_int, _port(0), "an integer port 0-65535",
            "gRPC port; 0 picks a free one"),
    _Option("http_port", "--http-port", "PORT", _parse_int, _port(-1), "an integer port 0-65535, or -1 for off",
            "KServe V2 REST (HTTP) port; 0: a free one; -1: off"),
    _Option("metrics_port", "--metrics-port", "PORT", _parse_int, _port(-1), "an integer port 0-65535, or -1 for off",
            "Prometheus /metrics port; 0 picks a free one, -1 turns it off"),
    _Option("device", "--device", "{" + ",".join(DEVICES) + "}", _lower, lambda v: v in DEVICES, _words(DEVICES),
            "auto: CUDA where usable, else CPU; cuda: fail unless CUDA works"),
    _Option("intra_op_threads", "--intra-op-threads", "N", _parse_int, _at_least(0), _ANY_INT,
            "ONNX Runtime threads inside one operator; 0: one per physical core"),
    _Option("inter_op_threads", "--inter-op-threads", "N", _parse_int, _at_least(0), _ANY_INT,
            "ONNX Runtime threads across operators; 0: its default"),
    _Option("ort_spinning", "--ort-spinning", "{on,off}", _lower, lambda v: v in ("on", "off"), "on or off",
            "ONNX Runtime intra-op threads spin-wait between runs"),
    _Option("batch_shapes", "--batch-shapes", "{" + ",".join(BATCH_SHAPES) + "}", _lower, lambda v: v in BATCH_SHAPES,
            _words(BATCH_SHAPES), "padded: each batch padded to a preferred size, one session per size; "
            "exact: batches at their own size; auto: padded on CUDA"),
    _Option("cuda_conv_algo_search", "--cuda-conv-algo-search", "{" + ",".join(CONV_ALGO_SEARCHES) + "}", _lower,
            lambda v: v in CONV_ALGO_SEARCHES, _words(CONV_ALGO_SEARCHES), "how cuDNN picks convolution algorithms"),
    _Option("cuda_memory_limit", "--cuda-memory-limit", "SIZE", _parse_bytes, _at_least(0),
            "a size, 0 or more (bytes, or a KiB/MiB/GiB suffix)",
            "bytes a CUDA session's arena may grow to; 0: no limit", "0"),
    _Option("cuda_arena_strategy", "--cuda-arena-strategy", "{" + ",".join(ARENA_STRATEGIES) + "}", _lower,
            lambda v: v in ARENA_STRATEGIES, _words(ARENA_STRATEGIES), "how a CUDA memory arena grows"),
    _Option("cuda_copy_stream", "--cuda-copy-stream", "{" + ",".join(COPY_STREAMS) + "}", _lower,
            lambda v: v in COPY_STREAMS, _words(COPY_STREAMS), "host-device copies on the compute stream or their own"),
    _Option("cuda_tf32", "--cuda-tf32", "{on,off}", _lower, lambda v: v in ("on", "off"), "on or off",
            "let CUDA convolutions and matrix products use TF32"),
    _Option("cuda_graphs", "--cuda-graphs", "{on,off}", _lower, lambda v: v in ("on", "off"), "on or off",
            "capture each CUDA session's run as a CUDA graph and replay it"),
    _Option("workers", "--workers", "N", _parse_count_or_auto, _at_least(1, optional=True),
            "an integer, 1 or more, or auto",
            "worker processes sharing the gRPC port under a supervisor; auto: from the cores and device"),
    _Option("worker_timeout", "--worker-timeout", "SECONDS", float,
            lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a number of seconds, 0 or more",
            "kill and replace a worker of several silent this long; 0: never"),
    _Option("instances", "--instances", "N", _parse_count_or_auto, _at_least(1, optional=True),
            "an integer, 1 or more, or auto", "model instances, each on its own thread; auto: 2 on CUDA, 1 on the CPU",
            "auto"),
    _Option("max_batch_size", "--max-batch-size", "N", _parse_int, _at_least(1, optional=True), _POSITIVE,
            "override every model's max_batch_size", _CONFIG),
    _Option("max_queue_delay_us", "--max-queue-delay-us", "US", _parse_int, _at_least(0, optional=True),
            "an integer number of microseconds, 0 or more", "override every model's max_queue_delay_us", _CONFIG),
    _Option("inline_compute_us", "--inline-compute-us", "US", _parse_int, _at_least(0),
            "an integer number of microseconds, 0 or more",
            "run a lone request on the event loop when its model computes it in at most this; 0: never"),
    _Option("max_queue_size", "--max-queue-size", "N", _parse_int, _at_least(1, optional=True), _POSITIVE,
            "requests one model may queue before RESOURCE_EXHAUSTED", "8x max batch size"),
    _Option("max_queue_bytes", "--max-queue-bytes", "SIZE", _parse_bytes,
            lambda v: _is_int(v) and v >= KIB, "a size of at least 1KiB (bytes, or a KiB/MiB/GiB suffix)",
            "bytes of inputs one model may queue before RESOURCE_EXHAUSTED", "1GiB"),
    _Option("max_concurrent_rpcs", "--max-concurrent-rpcs", "N", _parse_int, _at_least(0), _ANY_INT,
            "RPCs handled at once before gRPC answers RESOURCE_EXHAUSTED; 0: no limit"),
    _Option("grpc_max_concurrent_streams", "--grpc-max-concurrent-streams", "N", _parse_int, _at_least(1), _POSITIVE,
            "calls one gRPC connection may have open at once; more wait in the client"),
    _Option("grpc_keepalive_time", "--grpc-keepalive-time", "MS", _parse_int, _at_least(1), _MS,
            "milliseconds of quiet before the server pings a client"),
    _Option("grpc_keepalive_timeout", "--grpc-keepalive-timeout", "MS", _parse_int, _at_least(1), _MS,
            "milliseconds the server waits for a ping's answer"),
    _Option("grpc_min_ping_interval", "--grpc-http2-min-recv-ping-interval-without-data",
            "MS", _parse_int, _at_least(0), _MS0, "milliseconds a client must leave between pings without calls"),
    _Option("grpc_http2_max_ping_strikes", "--grpc-http2-max-ping-strikes", "N", _parse_int, _at_least(0), _ANY_INT,
            "pings too early before GOAWAY too_many_pings; 0: no limit"),
    _Option("grpc_max_connection_idle", "--grpc-max-connection-idle", "MS", _parse_int, _at_least(0), _MS0,
            "milliseconds without calls before a connection is closed; 0: never", "0: never"),
    _Option("grpc_max_connection_age", "--grpc-max-connection-age", "MS", _parse_int, _at_least(0), _MS0,
            "milliseconds before a connection is asked to end (clients reconnect); 0: never", "0: never"),
    _Option("grpc_max_connection_age_grace", "--grpc-max-connection-age-grace", "MS", _parse_int, _at_least(0), _MS0,
            "milliseconds an aged connection's calls get to finish"),
    _Option("max_message_bytes", "--max-message-bytes", "SIZE", _parse_bytes,
            lambda v: _is_int(v) and KIB <= v < 2 * GIB, "a size from 1KiB to 2GiB-1 (bytes, or a KiB/MiB/GiB suffix)",
            "largest gRPC message either way; bytes, or with a KiB/MiB/GiB suffix", "64MiB"),
    _Option("max_images_per_request", "--max-images-per-request", "N", _parse_int, _at_least(1), _POSITIVE,
            "most images one Classify request may carry"),
    _Option("max_image_pixels", "--max-image-pixels", "N", _parse_int, _at_least(1), _POSITIVE,
            "largest image Classify decodes (width x height), checked before decoding"),
    _Option("decode_threads", "--decode-threads", "N", _parse_int, _at_least(0), _ANY_INT,
            "threads decoding Classify images (and as many reading Policy positions); 0: one per CPU"),
    _Option("grace_seconds", "--grace-seconds", "SECONDS", float,
            lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a number of seconds, 0 or more",
            "time accepted requests get to finish on SIGTERM/SIGINT"),
    _Option("drain_seconds", "--drain-seconds", "SECONDS", float,
            lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a number of seconds, 0 or more",
            "on SIGTERM/SIGINT, go on taking new requests this long while health says NOT_SERVING "
            "(time for a balancer to stop sending), then refuse them"),
    _Option("log_level", "--log-level", "{" + ",".join(LOG_LEVELS) + "}", _lower, lambda v: v in LOG_LEVELS,
            _words(LOG_LEVELS), "log level"),
    _Option("models", "--model", "NAME", _parse_names,
            lambda v: isinstance(v, tuple) and all(_text(n) and "," not in n for n in v),
            "model names, comma-separated", "serve only this repository entry; repeatable, or comma-separated",
            "every entry"),
    _Option("model_control_mode", "--model-control-mode", "{" + ",".join(CONTROL_MODES) + "}", _lower,
            lambda v: v in CONTROL_MODES, _words(CONTROL_MODES),
            "none: load every entry at start; explicit: RepositoryModelLoad/Unload; poll: follow the repository"),
    _Option("load_models", "--load-model", "NAME", _parse_names,
            lambda v: isinstance(v, tuple) and all(_text(n) and "," not in n for n in v),
            "model names, comma-separated, or *", "with explicit model control, load this entry at start "
            "(repeatable; * for every entry)", "none"),
    _Option("repository_poll_seconds", "--repository-poll-seconds", "SECONDS", float,
            lambda v: _is_number(v) and math.isfinite(v) and v > 0, "a number of seconds, more than 0",
            "with poll model control, seconds between two looks at the repository"),
    _Option("model_name", "--model-name", "NAME", str.strip,
            lambda v: isinstance(v, str) and "," not in v and "/" not in v, "a model name",
            "serve a repository that is one entry (KServe's /mnt/models) under this name",
            "the name in its config.json"),
    _Option("tls_cert", "--tls-cert", "FILE", str.strip, _path_or_empty, "a file path",
            "PEM certificate for TLS on the gRPC and HTTP ports (with --tls-key)", "none: clear text"),
    _Option("tls_key", "--tls-key", "FILE", str.strip, _path_or_empty, "a file path",
            "PEM private key of --tls-cert", "none"),
    _Option("tls_client_ca", "--tls-client-ca", "FILE", str.strip, _path_or_empty, "a file path",
            "PEM CA: require client certificates it signed (mutual TLS)", "none"),
    _Option("metrics_host", "--metrics-host", "ADDR", str.strip, lambda v: isinstance(v, str),
            "an address or host name", "address the metrics endpoint binds to, e.g. 127.0.0.1", "--host"),
    _Option("grpc_restricted_protocol", "--grpc-restricted-protocol", "GROUPS:KEY=VALUE", _parse_restrictions,
            _restrictions, "GROUPS:KEY=VALUE, groups among " + ",".join(GROUPS) + ", each group once",
            "gRPC calls of these groups need the header triton-grpc-protocol-KEY: VALUE; repeatable", "none",
            secret=True),
    _Option("http_restricted_api", "--http-restricted-api", "GROUPS:KEY=VALUE", _parse_restrictions,
            _restrictions, "GROUPS:KEY=VALUE, groups among " + ",".join(GROUPS) + ", each group once",
            "HTTP requests of these groups need the header KEY: VALUE; repeatable", "none", secret=True),
)  # fmt: skip
LISTS = ("models", "load_models", "grpc_restricted_protocol", "http_restricted_api")  # repeatable flags


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for option in OPTIONS:
        text = environ.get(option.variable, "")
        if text.strip() == "":
            continue
        try:
            values[option.field] = option.convert(text)
        except ValueError:
            raise SettingsError(f"{option.variable}={option.shown(text)}: expected {option.expected}") from None
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` flags. Each defaults to None, so that :meth:`Settings.from_args` can tell
    a flag given from one left out and let the environment and the defaults apply."""
    defaults = Settings()
    for option in OPTIONS:

        def convert(text: str, option: _Option = option) -> Any:
            try:
                return option.convert(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {option.expected}, got {option.shown(text)}") from None

        default = option.shown_default or str(getattr(defaults, option.field))
        # --model NAME[,NAME] may repeat; "extend" flattens the tuples _parse_names returns.
        kwargs: dict[str, Any] = {"dest": option.field, "action": "extend"} if option.field in LISTS else {}
        parser.add_argument(
            option.flag,
            type=convert,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} (default: {default}; env {option.variable})",
            **kwargs,
        )
