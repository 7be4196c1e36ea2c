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
import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnserve.repository import OVERRIDABLE
from cnnserve.server.tracing.config import from_entries, otel_problem

KIB, MIB, GIB = 1024, 1024**2, 1024**3
DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
BATCH_SHAPES = ("auto", "exact", "padded")
CONV_ALGO_SEARCHES = ("exhaustive", "heuristic", "default")
ARENA_STRATEGIES = ("same_as_requested", "next_power_of_two")
COPY_STREAMS = ("default", "separate")
CONTROL_MODES = ("none", "explicit", "poll")
# Triton's groups of protocols that a header may restrict (cnnserve.v1 belongs to inference).
GROUPS = ("health", "metadata", "inference", "model-repository", "statistics", "trace", "logging")
# A load or unload call reaches one worker of several (connections are spread, not calls).
EXPLICIT_WORKERS = (
    "model_control_mode explicit with {workers} workers: a RepositoryModelLoad reaches one worker "
    "only; use --model-control-mode poll (each worker follows the repository) or one worker"
)


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names the variable or field."""


# -- how settings read from text and what they accept --------------------------------------------


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


def _parse_sizes(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    sizes = tuple(_parse_int(t) for t in text.split(","))
    if not sizes:
        raise ValueError(text)
    return sizes


def _parse_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:  # "--model ''" must not quietly mean "every model"
        raise ValueError(text)
    return names


def _words(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


@dataclass(frozen=True)
class _Option:
    """One setting's declaration beside its field: how it reads from text, its range, and how it
    is shown (``cnnserve serve --help``, the settings table of the docs)."""

    flag: str
    metavar: str
    parse: Callable[[str], Any]  # raises ValueError on text that is not even of the right kind
    check: Callable[[Any], bool]  # the value's range, also applied to directly built Settings
    expected: str  # completes "...: expected "
    help: str
    doc: str = ""  # the longer explanation, for the docs
    shown_default: str = ""  # for the help text where repr(default) says little
    secret: bool = False  # its values carry keys: never echoed in a message
    field: str = ""  # the Settings field it declares (filled in from the class)

    def shown(self, value: object) -> str:
        return "(value hidden: it holds a key)" if self.secret else repr(value)

    @property
    def variable(self) -> str:
        return "CNNSERVE_" + self.field.upper()

    def default_text(self, defaults: Any) -> str:
        """The default as ``--help`` and the docs' settings page show it."""
        return self.shown_default or str(getattr(defaults, self.field))

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


def _parse_trace_entries(text: str) -> tuple[str, ...]:
    entries = tuple(e.strip() for e in text.split(";") if e.strip())
    from_entries(entries)
    return entries


def _trace_entries(v: Any) -> bool:
    try:
        from_entries(v)
    except (ValueError, TypeError):
        return False
    return isinstance(v, tuple)


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


def setting(
    *,
    default: Any,
    flag: str,
    metavar: str,
    parse: Callable[[str], Any],
    check: Callable[[Any], bool],
    expected: str,
    help: str,
    doc: str = "",
    shown_default: str = "",
    secret: bool = False,
    repr: bool = True,
) -> Any:
    """A field of :class:`Settings` with its declaration: everything about a setting is said here
    once; the variable (``CNNSERVE_`` and the field's name in capitals), the flag's help and the
    docs' settings table are made from it."""
    option = _Option(flag, metavar, parse, check, expected, help, doc, shown_default, secret)
    return field(default=default, repr=repr, metadata={"option": option})


@dataclass(frozen=True)
class Settings:
    """What ``cnnserve serve`` runs with. Build it with :meth:`from_args` or :meth:`from_env`;
    direct construction is checked the same way."""

    repo: str = setting(
        default="exported",
        flag="--repo",
        metavar="DIR",
        parse=str.strip,
        check=_text,
        expected="a folder path",
        help="model repository folder",
        doc="Model repository folder.",
    )
    host: str = setting(
        default="0.0.0.0",
        flag="--host",
        metavar="ADDR",
        parse=str.strip,
        check=_text,
        expected="an address or host name",
        help="address both ports bind to",
        doc="Address both ports bind to.",
    )
    grpc_port: int = setting(
        default=8001,
        flag="--grpc-port",
        metavar="PORT",
        parse=_parse_int,
        check=_port(0),
        expected="an integer port 0-65535",
        help="gRPC port; 0 picks a free one",
        doc="gRPC port, Triton's default; 0 picks a free one.",
    )
    http_port: int = setting(
        default=8000,
        flag="--http-port",
        metavar="PORT",
        parse=_parse_int,
        check=_port(-1),
        expected="an integer port 0-65535, or -1 for off",
        help="KServe V2 REST (HTTP) port; 0: a free one; -1: off",
        doc="KServe V2 REST port, Triton's default; 0 picks a free one, -1 turns HTTP off.",
    )
    metrics_port: int = setting(
        default=8002,
        flag="--metrics-port",
        metavar="PORT",
        parse=_parse_int,
        check=_port(-1),
        expected="an integer port 0-65535, or -1 for off",
        help="Prometheus /metrics port; 0 picks a free one, -1 turns it off",
        doc="Prometheus ``/metrics`` port, Triton's default; 0 picks a free one, -1 turns the endpoint off.",
    )
    device: str = setting(
        default="auto",
        flag="--device",
        metavar="{" + ",".join(DEVICES) + "}",
        parse=_lower,
        check=lambda v: v in DEVICES,
        expected=_words(DEVICES),
        help="auto: CUDA where usable, else CPU; cuda: fail unless CUDA works",
        doc=(
            "``auto``: CUDA where a session can use it, else CPU; ``cpu``; ``cuda``: fail at start unless CUDA works."
        ),
    )
    intra_op_threads: int = setting(
        default=0,
        flag="--intra-op-threads",
        metavar="N",
        parse=_parse_int,
        check=_at_least(0),
        expected=_ANY_INT,
        help="ONNX Runtime threads inside one operator; 0: one per physical core",
        doc="ONNX Runtime threads inside one operator; 0 = its default, one per physical core.",
    )
    inter_op_threads: int = setting(
        default=0,
        flag="--inter-op-threads",
        metavar="N",
        parse=_parse_int,
        check=_at_least(0),
        expected=_ANY_INT,
        help="ONNX Runtime threads across operators; 0: its default",
        doc="ONNX Runtime threads across operators (parallel execution mode only); 0 = its default.",
    )
    ort_spinning: str = setting(
        default="off",
        flag="--ort-spinning",
        metavar="{on,off}",
        parse=_lower,
        check=lambda v: v in ("on", "off"),
        expected="on or off",
        help="ONNX Runtime intra-op threads spin-wait between runs",
        doc=(
            'Whether ONNX Runtime\'s intra-op threads spin-wait for work between runs: "on" or "off". Off '
            "by default: on a small CPU machine the spinning threads steal the cores the gRPC front end "
            "needs; turn it on for a CPU box with cores to spare."
        ),
    )
    batch_shapes: str = setting(
        default="auto",
        flag="--batch-shapes",
        metavar="{" + ",".join(BATCH_SHAPES) + "}",
        parse=_lower,
        check=lambda v: v in BATCH_SHAPES,
        expected=_words(BATCH_SHAPES),
        help="padded: each batch padded to a preferred size, one session per size; "
        "exact: batches at their own size; auto: padded on CUDA",
        doc=(
            "``padded``: every batch is zero-padded to the smallest of the preferred batch sizes and "
            "max_batch_size that holds it, and each such size has sessions of its own, so that no session "
            "ever sees a second shape (with cuDNN 9 a shape change rebuilds every convolution plan); "
            "``exact``: batches run at their own size; ``auto``: padded on CUDA, exact on the CPU."
        ),
    )
    cuda_conv_algo_search: str = setting(
        default="exhaustive",
        flag="--cuda-conv-algo-search",
        metavar="{" + ",".join(CONV_ALGO_SEARCHES) + "}",
        parse=_lower,
        check=lambda v: v in CONV_ALGO_SEARCHES,
        expected=_words(CONV_ALGO_SEARCHES),
        help="how cuDNN picks convolution algorithms",
        doc=(
            "How cuDNN picks each convolution's algorithm: ``exhaustive`` times them all once per session "
            "and shape (at warm-up, with padded batch shapes), ``heuristic`` asks cuDNN's heuristics, "
            "``default`` takes the default algorithm; ONNX Runtime's default is exhaustive."
        ),
    )
    cuda_memory_limit: int = setting(
        default=0,
        flag="--cuda-memory-limit",
        metavar="SIZE",
        parse=_parse_bytes,
        check=_at_least(0),
        expected="a size, 0 or more (bytes, or a KiB/MiB/GiB suffix)",
        help="bytes a CUDA session's arena may grow to; 0: no limit",
        shown_default="0",
        doc=(
            "Bytes each CUDA session's memory arena may grow to; 0 = no limit, ONNX Runtime's default. A "
            "KiB, MiB or GiB suffix may follow the number."
        ),
    )
    cuda_arena_strategy: str = setting(
        default="same_as_requested",
        flag="--cuda-arena-strategy",
        metavar="{" + ",".join(ARENA_STRATEGIES) + "}",
        parse=_lower,
        check=lambda v: v in ARENA_STRATEGIES,
        expected=_words(ARENA_STRATEGIES),
        help="how a CUDA memory arena grows",
        doc=(
            "How a CUDA arena grows: ``same_as_requested`` by what is asked, ``next_power_of_two`` by "
            "powers of two (ONNX Runtime's default; wasteful with a session per batch shape)."
        ),
    )
    cuda_copy_stream: str = setting(
        default="default",
        flag="--cuda-copy-stream",
        metavar="{" + ",".join(COPY_STREAMS) + "}",
        parse=_lower,
        check=lambda v: v in COPY_STREAMS,
        expected=_words(COPY_STREAMS),
        help="host-device copies on the compute stream or their own",
        doc=(
            "``default``: host-device copies on the compute stream (ONNX Runtime's default); "
            "``separate``: on streams of their own, which ONNX Runtime warns may race for some models."
        ),
    )
    cuda_tf32: str = setting(
        default="off",
        flag="--cuda-tf32",
        metavar="{on,off}",
        parse=_lower,
        check=lambda v: v in ("on", "off"),
        expected="on or off",
        help="let CUDA convolutions and matrix products use TF32",
        doc=(
            "``on`` lets convolutions and matrix products on Ampere and later GPUs run in TF32 (10-bit "
            "mantissas: faster, less exact); off by default so float32 models compute in float32."
        ),
    )
    cuda_graphs: str = setting(
        default="off",
        flag="--cuda-graphs",
        metavar="{on,off}",
        parse=_lower,
        check=lambda v: v in ("on", "off"),
        expected="on or off",
        help="capture each CUDA session's run as a CUDA graph and replay it",
        doc=(
            "``on``: each CUDA session captures its run as a CUDA graph at warm-up and replays it, which "
            "saves the launch of every kernel (most of a small batch's time); needs the CUDA provider and "
            "padded batch shapes, and a model whose every node runs on CUDA (one that cannot be captured "
            "fails to load, saying why)."
        ),
    )
    workers: int | None = setting(
        default=1,
        flag="--workers",
        metavar="N",
        parse=_parse_count_or_auto,
        check=_at_least(1, optional=True),
        expected="an integer, 1 or more, or auto",
        help="worker processes sharing the gRPC port under a supervisor; auto: from the cores and device",
        doc=(
            "Front-end worker processes, each a complete server (event loop, batchers, sessions) on the "
            "same gRPC port (``SO_REUSEPORT``), under a supervisor that serves the summed metrics and "
            "replaces a worker that dies; 1 = one process, no supervisor; ``auto`` = one per two "
            "cores on the CPU, and on CUDA one per core up to 4."
        ),
    )
    worker_timeout: float = setting(
        default=30.0,
        flag="--worker-timeout",
        metavar="SECONDS",
        parse=float,
        check=lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
        expected="a number of seconds, 0 or more",
        help="kill and replace a worker of several silent this long; 0: never",
        doc=(
            "Seconds a worker of several may go without a heartbeat (its event loop touches a file every "
            "second) before the supervisor kills it with SIGKILL and starts a replacement, as gunicorn's "
            "``--timeout``: a worker that hangs (a deadlock, a stuck native call on its event loop, "
            "SIGSTOP) would otherwise keep its connections and answer nothing; 0 = never."
        ),
    )
    instances: int | None = setting(
        default=None,
        flag="--instances",
        metavar="N",
        parse=_parse_count_or_auto,
        check=_at_least(1, optional=True),
        expected="an integer, 1 or more, or auto",
        help="model instances, each on its own thread; auto: config.json's instance_group, else 2 on CUDA, 1 on CPU",
        shown_default="auto",
        doc=(
            "Model instances, each with its session(s) and a thread of its own, for every model; "
            "``auto`` = the count of the model's config.json ``instance_group`` where it gives one, else 2 "
            "on CUDA, so that one batch is copied in while another computes, and 1 on the CPU, where the "
            "cores are already busy with one."
        ),
    )
    max_batch_size: int | None = setting(
        default=None,
        flag="--max-batch-size",
        metavar="N",
        parse=_parse_int,
        check=_at_least(1, optional=True),
        expected=_POSITIVE,
        help="override every model's max_batch_size",
        shown_default=_CONFIG,
        doc="Override every model's ``max_batch_size``; unset, each model's config.json.",
    )
    max_queue_delay_us: int | None = setting(
        default=None,
        flag="--max-queue-delay-us",
        metavar="US",
        parse=_parse_int,
        check=_at_least(0, optional=True),
        expected="an integer number of microseconds, 0 or more",
        help="override every model's max_queue_delay_us",
        shown_default=_CONFIG,
        doc="Override every model's ``max_queue_delay_us``; unset, each model's config.json.",
    )
    preferred_batch_sizes: tuple[int, ...] | None = setting(
        default=None,
        flag="--preferred-batch-sizes",
        metavar="N,N|none",
        parse=_parse_sizes,
        check=lambda v: v is None or (isinstance(v, tuple | list) and all(_is_int(b) and b >= 1 for b in v)),
        expected="batch sizes, comma-separated integers of 1 or more, or none",
        help="override every model's preferred batch sizes; none: no preferred size",
        shown_default=_CONFIG,
        doc=(
            "Override every model's ``dynamic_batching.preferred_batch_sizes``, comma-separated; ``none`` = "
            "no preferred size (a batch leaves full, at ``max_batch_size``, or when its oldest request "
            "has waited ``max_queue_delay_us``); unset, each model's config.json."
        ),
    )
    inline_compute_us: int = setting(
        default=250,
        flag="--inline-compute-us",
        metavar="US",
        parse=_parse_int,
        check=_at_least(0),
        expected="an integer number of microseconds, 0 or more",
        help="run a lone request on the event loop when its model computes it in at most this; 0: never",
        doc=(
            "A lone one-item request (its model idle, nothing else in flight for it, the model's last run "
            "finished more than 0.6 ms before) runs on the event loop's own thread, skipping the hop to a "
            "worker thread and back, when the model's lone request computes in at most this many "
            "microseconds (measured at warm-up and logged: a small model such as LeNet-5 computes in about "
            "as long as the hop takes); on the CPU on a session of its own with one intra-op thread; 0 = "
            "never."
        ),
    )
    max_queue_size: int | None = setting(
        default=None,
        flag="--max-queue-size",
        metavar="N",
        parse=_parse_int,
        check=_at_least(1, optional=True),
        expected=_POSITIVE,
        help="requests one model may queue before RESOURCE_EXHAUSTED",
        shown_default="8x max batch size",
        doc=(
            "Requests one model may queue before RESOURCE_EXHAUSTED; unset, the batcher's default, eight "
            "times max_batch_size."
        ),
    )
    max_queue_bytes: int = setting(
        default=1 * GIB,
        flag="--max-queue-bytes",
        metavar="SIZE",
        parse=_parse_bytes,
        check=lambda v: _is_int(v) and v >= KIB,
        expected="a size of at least 1KiB (bytes, or a KiB/MiB/GiB suffix)",
        help="bytes of inputs one model may queue before RESOURCE_EXHAUSTED",
        shown_default="1GiB",
        doc=(
            "Bytes of inputs one model may hold queued before RESOURCE_EXHAUSTED, whatever the request "
            "count: 256 queued requests of 32 float32 224x224 images would be 4.9 GB. A KiB, MiB or GiB "
            "suffix may follow the number."
        ),
    )
    max_concurrent_rpcs: int = setting(
        default=1024,
        flag="--max-concurrent-rpcs",
        metavar="N",
        parse=_parse_int,
        check=_at_least(0),
        expected=_ANY_INT,
        help="RPCs handled at once before gRPC answers RESOURCE_EXHAUSTED; 0: no limit",
        doc=(
            "RPCs the gRPC server handles at once (streams included); beyond that gRPC itself answers "
            'RESOURCE_EXHAUSTED ("Concurrent RPC limit exceeded!"), so that a flood of large messages '
            "cannot grow the process without end. The HTTP front end takes as many requests again, "
            "counted apart, and answers 429 beyond them (health checks are never refused); 0 = no limit."
        ),
    )
    grpc_max_concurrent_streams: int = setting(
        default=256,
        flag="--grpc-max-concurrent-streams",
        metavar="N",
        parse=_parse_int,
        check=_at_least(1),
        expected=_POSITIVE,
        help="calls one gRPC connection may have open at once; more wait in the client",
        doc=(
            "Calls one gRPC connection may have open at once (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS); "
            "a client's calls beyond wait in the client for a free stream, they are not refused."
        ),
    )
    grpc_keepalive_time: int = setting(
        default=7_200_000,
        flag="--grpc-keepalive-time",
        metavar="MS",
        parse=_parse_int,
        check=_at_least(1),
        expected=_MS,
        help="milliseconds of quiet before the server pings a client",
        doc=(
            "Milliseconds of quiet after which the server pings a client to see it is there, as Triton's "
            "--grpc-keepalive-time."
        ),
    )
    grpc_keepalive_timeout: int = setting(
        default=20_000,
        flag="--grpc-keepalive-timeout",
        metavar="MS",
        parse=_parse_int,
        check=_at_least(1),
        expected=_MS,
        help="milliseconds the server waits for a ping's answer",
        doc="Milliseconds the server waits for that ping's answer before it closes the connection.",
    )
    grpc_min_ping_interval: int = setting(
        default=300_000,
        flag="--grpc-http2-min-recv-ping-interval-without-data",
        metavar="MS",
        parse=_parse_int,
        check=_at_least(0),
        expected=_MS0,
        help="milliseconds a client must leave between pings without calls",
        doc=(
            "Milliseconds a client must leave between its pings while no call is open; a client that "
            "pings more often earns a strike."
        ),
    )
    grpc_http2_max_ping_strikes: int = setting(
        default=2,
        flag="--grpc-http2-max-ping-strikes",
        metavar="N",
        parse=_parse_int,
        check=_at_least(0),
        expected=_ANY_INT,
        help="pings too early before GOAWAY too_many_pings; 0: no limit",
        doc=(
            "Strikes after which the server closes the connection with GOAWAY ``too_many_pings``, as "
            "gRPC's keepalive policy has it; 0 = no limit."
        ),
    )
    grpc_max_connection_idle: int = setting(
        default=0,
        flag="--grpc-max-connection-idle",
        metavar="MS",
        parse=_parse_int,
        check=_at_least(0),
        expected=_MS0,
        help="milliseconds without calls before a connection is closed; 0: never",
        shown_default="0: never",
        doc=(
            "Milliseconds a gRPC connection may stay without calls before the server closes it (GOAWAY; "
            "the client reconnects when it next calls); 0 = forever."
        ),
    )
    grpc_max_connection_age: int = setting(
        default=0,
        flag="--grpc-max-connection-age",
        metavar="MS",
        parse=_parse_int,
        check=_at_least(0),
        expected=_MS0,
        help="milliseconds before a connection is asked to end (clients reconnect); 0: never",
        shown_default="0: never",
        doc=(
            "Milliseconds after which a gRPC connection is asked to end (GOAWAY) and the client "
            "reconnects, which lets a balancer spread long-lived clients again; 0 = never."
        ),
    )
    grpc_max_connection_age_grace: int = setting(
        default=30_000,
        flag="--grpc-max-connection-age-grace",
        metavar="MS",
        parse=_parse_int,
        check=_at_least(0),
        expected=_MS0,
        help="milliseconds an aged connection's calls get to finish",
        doc="Milliseconds the calls open on an aged connection get to finish before it is closed.",
    )
    max_message_bytes: int = setting(
        default=64 * MIB,
        flag="--max-message-bytes",
        metavar="SIZE",
        parse=_parse_bytes,
        check=lambda v: _is_int(v) and KIB <= v < 2 * GIB,
        expected="a size from 1KiB to 2GiB-1 (bytes, or a KiB/MiB/GiB suffix)",
        help="largest gRPC message either way; bytes, or with a KiB/MiB/GiB suffix",
        shown_default="64MiB",
        doc=(
            "Largest gRPC message either way, and largest HTTP request body (413 beyond it). gRPC's own 4 "
            "MiB holds fewer than seven float32 224x224x3 images; gRPC takes at most 2 GiB - 1. A KiB, MiB "
            "or GiB suffix may follow the number."
        ),
    )
    max_images_per_request: int = setting(
        default=64,
        flag="--max-images-per-request",
        metavar="N",
        parse=_parse_int,
        check=_at_least(1),
        expected=_POSITIVE,
        help="most images one Classify request may carry",
        doc="Most images one Classify request may carry.",
    )
    max_image_pixels: int = setting(
        default=50_000_000,
        flag="--max-image-pixels",
        metavar="N",
        parse=_parse_int,
        check=_at_least(1),
        expected=_POSITIVE,
        help="largest image Classify decodes (width x height), checked before decoding",
        doc=(
            "Largest image Classify decodes, in pixels (width x height), checked from the image's header "
            "before any pixel is decoded: a 50-megapixel photo passes, a decompression bomb does not."
        ),
    )
    decode_threads: int = setting(
        default=0,
        flag="--decode-threads",
        metavar="N",
        parse=_parse_int,
        check=_at_least(0),
        expected=_ANY_INT,
        help="threads decoding Classify images (and as many reading Policy positions); 0: one per CPU",
        doc=(
            "Threads that decode and preprocess Classify images, and threads that read Policy positions "
            "into feature planes, off the event loop; 0 = one per CPU."
        ),
    )
    grace_seconds: float = setting(
        default=10.0,
        flag="--grace-seconds",
        metavar="SECONDS",
        parse=float,
        check=lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
        expected="a number of seconds, 0 or more",
        help="time accepted requests get to finish on SIGTERM/SIGINT",
        doc="On SIGTERM/SIGINT, how long accepted requests get to finish.",
    )
    drain_seconds: float = setting(
        default=0.0,
        flag="--drain-seconds",
        metavar="SECONDS",
        parse=float,
        check=lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
        expected="a number of seconds, 0 or more",
        help="on SIGTERM/SIGINT, go on taking new requests this long while health says NOT_SERVING "
        "(time for a balancer to stop sending), then refuse them",
        doc=(
            "On SIGTERM/SIGINT, how long the server goes on taking new requests while health says "
            "NOT_SERVING and readiness is false, before it refuses them and the grace period begins: time "
            "for a balancer to take it out of rotation (Kubernetes' preStop sleep); 0 = refuse at once."
        ),
    )
    log_level: str = setting(
        default="info",
        flag="--log-level",
        metavar="{" + ",".join(LOG_LEVELS) + "}",
        parse=_lower,
        check=lambda v: v in LOG_LEVELS,
        expected=_words(LOG_LEVELS),
        help="log level at start; clients may change the log settings at run time (/v2/logging, LogSettings)",
        doc=(
            "debug, info, warning or error: where the log settings start. Clients change them at run time "
            "through Triton's logging extension (``/v2/logging``, gRPC LogSettings; the ``logging`` group "
            "restricts it)."
        ),
    )
    models: tuple[str, ...] = setting(
        default=(),
        flag="--model",
        metavar="NAME",
        parse=_parse_names,
        check=lambda v: isinstance(v, tuple) and all(_text(n) and "," not in n for n in v),
        expected="model names, comma-separated",
        help="serve only this repository entry; repeatable, or comma-separated",
        shown_default="every entry",
        doc="Load only these repository entries; empty = every entry.",
    )
    model_control_mode: str = setting(
        default="none",
        flag="--model-control-mode",
        metavar="{" + ",".join(CONTROL_MODES) + "}",
        parse=_lower,
        check=lambda v: v in CONTROL_MODES,
        expected=_words(CONTROL_MODES),
        help="none: load every entry at start; explicit: RepositoryModelLoad/Unload; poll: follow the repository",
        doc=(
            "Triton's model control: ``none`` loads every entry at start and never changes; ``explicit`` "
            "loads the ``load_models`` at start and then what RepositoryModelLoad asks for (and unloads "
            "on RepositoryModelUnload); ``poll`` loads every entry and follows the repository: a new "
            "version folder or a changed entry is loaded beside the serving one and swapped in when "
            "ready, a removed entry unloaded."
        ),
    )
    load_models: tuple[str, ...] = setting(
        default=(),
        flag="--load-model",
        metavar="NAME",
        parse=_parse_names,
        check=lambda v: isinstance(v, tuple) and all(_text(n) and "," not in n for n in v),
        expected="model names, comma-separated, or *",
        help="with explicit model control, load this entry at start (repeatable; * for every entry)",
        shown_default="none",
        doc=(
            "With ``explicit`` model control, the entries loaded at start; ``*`` = every entry. The "
            "variable takes them comma-separated; the flag repeats."
        ),
    )
    repository_poll_seconds: float = setting(
        default=15.0,
        flag="--repository-poll-seconds",
        metavar="SECONDS",
        parse=float,
        check=lambda v: _is_number(v) and math.isfinite(v) and v > 0,
        expected="a number of seconds, more than 0",
        help="with poll model control, seconds between two looks at the repository",
        doc="With ``poll`` model control, seconds between two looks at the repository.",
    )
    tls_cert: str = setting(
        default="",
        flag="--tls-cert",
        metavar="FILE",
        parse=str.strip,
        check=_path_or_empty,
        expected="a file path",
        help="PEM certificate for TLS on the gRPC and HTTP ports (with --tls-key)",
        shown_default="none: clear text",
        doc=(
            "PEM certificate (chain) both ports present, gRPC and HTTP; with ``tls_key``, TLS on both; "
            "empty = clear text. Renewed by replacing the files and sending SIGHUP."
        ),
    )
    tls_key: str = setting(
        default="",
        flag="--tls-key",
        metavar="FILE",
        parse=str.strip,
        check=_path_or_empty,
        expected="a file path",
        help="PEM private key of --tls-cert",
        shown_default="none",
        doc="PEM private key of ``tls_cert``.",
    )
    tls_client_ca: str = setting(
        default="",
        flag="--tls-client-ca",
        metavar="FILE",
        parse=str.strip,
        check=_path_or_empty,
        expected="a file path",
        help="PEM CA: require client certificates it signed (mutual TLS)",
        shown_default="none",
        doc=(
            "PEM CA certificate(s): every client must present a certificate they signed (mutual TLS); "
            "empty = no client certificates asked for."
        ),
    )
    metrics_host: str = setting(
        default="",
        flag="--metrics-host",
        metavar="ADDR",
        parse=str.strip,
        check=lambda v: isinstance(v, str),
        expected="an address or host name",
        help="address the metrics endpoint binds to, e.g. 127.0.0.1",
        shown_default="--host",
        doc="Address the metrics endpoint binds to, e.g. 127.0.0.1 to keep it off the network; empty = ``host``.",
    )
    grpc_restricted_protocol: tuple[str, ...] = setting(
        default=(),
        flag="--grpc-restricted-protocol",
        metavar="GROUPS:KEY=VALUE",
        parse=_parse_restrictions,
        check=_restrictions,
        expected="GROUPS:KEY=VALUE, groups among " + ",".join(GROUPS) + ", each group once",
        help="gRPC calls of these groups need the header triton-grpc-protocol-KEY: VALUE; repeatable",
        shown_default="none",
        secret=True,
        repr=False,
        doc=(
            "Triton's ``GROUPS:KEY=VALUE`` (groups health, metadata, inference, model-repository, "
            "statistics, trace, logging; comma-separated): their gRPC calls need the header "
            "``triton-grpc-protocol-KEY: VALUE``, others get UNAVAILABLE; each group in one entry at most. "
            "The variable takes several entries separated by ``;``; the flag repeats."
        ),
    )
    http_restricted_api: tuple[str, ...] = setting(
        default=(),
        flag="--http-restricted-api",
        metavar="GROUPS:KEY=VALUE",
        parse=_parse_restrictions,
        check=_restrictions,
        expected="GROUPS:KEY=VALUE, groups among " + ",".join(GROUPS) + ", each group once",
        help="HTTP requests of these groups need the header KEY: VALUE; repeatable",
        shown_default="none",
        secret=True,
        repr=False,
        doc=(
            "The same for HTTP, as Triton's ``--http-restricted-api``: the header is ``KEY: VALUE``, "
            "others get 403. The variable takes several entries separated by ``;``; the flag repeats."
        ),
    )
    trace_config: tuple[str, ...] = setting(
        default=(),
        flag="--trace-config",
        metavar="[MODE,]SETTING=VALUE",
        parse=_parse_trace_entries,
        check=_trace_entries,
        expected=(
            "Triton's trace settings: level=OFF|TIMESTAMPS, rate=N, count=N, mode=triton|opentelemetry, "
            "triton,file=PATH, triton,log-frequency=N, opentelemetry,url=URL, opentelemetry,resource=KEY=VALUE, "
            "opentelemetry,bsp_max_queue_size=N, opentelemetry,bsp_schedule_delay=MS, "
            "opentelemetry,bsp_max_export_batch_size=N"
        ),
        help="a trace setting, as Triton's --trace-config (repeatable)",
        shown_default="level=OFF",
        doc=(
            "Per-request traces, as Triton's ``--trace-config``: ``level=TIMESTAMPS`` turns them on, "
            "``rate=N`` traces one request in N of each model (default 1000; 0: only requests that bring "
            "a sampled W3C ``traceparent``, which are always traced), ``count=N`` stops after N (-1: "
            "never). ``mode=triton`` (the default): ``triton,file=PATH`` writes Triton's JSON trace file "
            "when the server stops (``triton,log-frequency=N``: every N traces, to ``PATH.0``, "
            "``PATH.1``, ...). ``mode=opentelemetry``: spans over OTLP to ``opentelemetry,url=URL`` "
            "(default: the ``OTEL_EXPORTER_OTLP_*`` variables, else ``http://localhost:4318/v1/traces``; "
            "``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc`` for OTLP over gRPC), batched as the "
            "``bsp_*`` settings say, with ``resource=KEY=VALUE`` attributes. Clients change level, rate "
            "and count at run time, for the server or one model (``/v2/trace/setting``, gRPC "
            "TraceSetting; the ``trace`` group). The variable takes several entries separated by ``;``; "
            "the flag repeats."
        ),
    )
    model_name: str = setting(
        default="",
        flag="--model-name",
        metavar="NAME",
        parse=str.strip,
        check=lambda v: isinstance(v, str) and "," not in v and "/" not in v,
        expected="a model name",
        help="serve a repository that is one entry (KServe's /mnt/models) under this name",
        shown_default="the name in its config.json",
        doc=(
            "When the repository folder is itself one entry (``config.json`` and version folders in it, "
            "as KServe's storage initializer fills ``/mnt/models``), serve it under this name; empty = "
            "the name in its config.json."
        ),
    )

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
        traces = from_entries(self.trace_config)
        if traces.mode == "opentelemetry" and (problem := otel_problem()):
            raise SettingsError(f"trace_config: {problem}")
        if traces.mode == "triton" and traces.level != "OFF" and not traces.file:
            raise SettingsError("trace_config: level=TIMESTAMPS needs triton,file=PATH, where the traces go "
                                "(or mode=opentelemetry)")  # fmt: skip

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics_port >= 0

    def batching_overrides(self) -> dict[str, Any]:
        """The per-model config.json values these settings replace (for repository.scan)."""
        preferred = None if self.preferred_batch_sizes is None else tuple(self.preferred_batch_sizes)
        values = (self.max_batch_size, self.max_queue_delay_us, preferred)
        return {k: v for k, v in zip(OVERRIDABLE, values, strict=True) if v is not None}

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


OPTIONS: tuple[_Option, ...] = tuple(
    dataclasses.replace(f.metadata["option"], field=f.name) for f in dataclasses.fields(Settings)
)
LISTS = ("models", "load_models", "grpc_restricted_protocol", "http_restricted_api", "trace_config")  # repeatable flags


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

        default = option.default_text(defaults)
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
