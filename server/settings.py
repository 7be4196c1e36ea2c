"""Every server setting in one typed place: flags win over ``CNNSERVE_*`` variables, which win
over the defaults below.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

MIB = 1024 * 1024


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names the flag or variable."""


@dataclass(frozen=True)
class Settings:
    repo: str = "exported"
    """Model repository folder (CNNSERVE_REPO)."""
    host: str = "0.0.0.0"
    """Address both ports bind to (CNNSERVE_HOST)."""
    grpc_port: int = 8001
    """gRPC port, Triton's default; 0 picks a free one (CNNSERVE_GRPC_PORT)."""
    metrics_port: int = 8002
    """Prometheus /metrics port; 0 picks a free one, -1 turns it off (CNNSERVE_METRICS_PORT)."""
    device: str = "auto"
    """auto: CUDA where a GPU is usable, else CPU; cpu; cuda: fail unless CUDA runs (CNNSERVE_DEVICE)."""
    intra_op_threads: int = 0
    """ONNX Runtime threads inside one operator; 0 = one per core (CNNSERVE_INTRA_OP_THREADS)."""
    inter_op_threads: int = 0
    """ONNX Runtime threads across operators; 0 = its default (CNNSERVE_INTER_OP_THREADS)."""
    instances: int = 1
    """ONNX Runtime sessions per model, each run by its own thread (CNNSERVE_INSTANCES)."""
    max_batch_size: int | None = None
    """Override every model's max_batch_size from config.json (CNNSERVE_MAX_BATCH_SIZE)."""
    max_queue_delay_us: int | None = None
    """Override every model's max_queue_delay_us (CNNSERVE_MAX_QUEUE_DELAY_US)."""
    max_queue_size: int | None = None
    """Requests a model may queue before RESOURCE_EXHAUSTED; default 8x max_batch_size (CNNSERVE_MAX_QUEUE_SIZE)."""
    max_message_bytes: int = 64 * MIB
    """Largest gRPC message either way; gRPC's own 4 MiB holds fewer than seven float32 224x224
    images (CNNSERVE_MAX_MESSAGE_BYTES)."""
    grace_seconds: float = 10.0
    """On SIGTERM/SIGINT, how long accepted requests may take to finish (CNNSERVE_GRACE_SECONDS)."""
    log_level: str = "info"
    """debug, info, warning or error (CNNSERVE_LOG_LEVEL)."""
    models: tuple[str, ...] = ()
    """Load only these entries; empty = every entry (CNNSERVE_MODELS, comma-separated)."""

    def __post_init__(self) -> None:
        for name in ("grpc_port",):
            _check(0 <= getattr(self, name) <= 65535, f"--grpc-port {self.grpc_port}: expected a port 0-65535")
        _check(-1 <= self.metrics_port <= 65535, f"--metrics-port {self.metrics_port}: expected -1 (off) or 0-65535")
        _check(self.device in ("auto", "cpu", "cuda"), f"--device {self.device!r}: expected auto, cpu or cuda")
        _check(self.instances >= 1, f"--instances {self.instances}: expected at least 1")
        _check(self.intra_op_threads >= 0, f"--intra-op-threads {self.intra_op_threads}: expected 0 or more")
        _check(self.inter_op_threads >= 0, f"--inter-op-threads {self.inter_op_threads}: expected 0 or more")
        _check(
            self.max_batch_size is None or self.max_batch_size >= 1,
            f"--max-batch-size {self.max_batch_size}: expected at least 1",
        )
        _check(
            self.max_queue_delay_us is None or self.max_queue_delay_us >= 0,
            f"--max-queue-delay-us {self.max_queue_delay_us}: expected 0 or more",
        )
        _check(
            self.max_queue_size is None or self.max_queue_size >= 1,
            f"--max-queue-size {self.max_queue_size}: expected at least 1",
        )
        _check(self.max_message_bytes >= 1024, f"--max-message-bytes {self.max_message_bytes}: expected >= 1024")
        _check(self.grace_seconds >= 0, f"--grace-seconds {self.grace_seconds}: expected 0 or more")
        _check(
            self.log_level in ("debug", "info", "warning", "error"),
            f"--log-level {self.log_level!r}: expected debug, info, warning or error",
        )

    def batching_overrides(self) -> dict[str, int]:
        overrides = {"max_batch_size": self.max_batch_size, "max_queue_delay_us": self.max_queue_delay_us}
        return {k: v for k, v in overrides.items() if v is not None}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(**_from_environ(environ))

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Settings:
        values = _from_environ(environ)
        for f in fields(cls):
            given = getattr(args, f.name, None)
            if given is not None and given != []:
                values[f.name] = tuple(given) if f.name == "models" else given
        return cls(**values)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SettingsError(message)


def _int(text: str) -> int:
    return int(text.strip())


def _optional_int(text: str) -> int | None:
    return None if text.strip() == "" else int(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "repo": str,
    "host": str,
    "grpc_port": _int,
    "metrics_port": _int,
    "device": str,
    "intra_op_threads": _int,
    "inter_op_threads": _int,
    "instances": _int,
    "max_batch_size": _optional_int,
    "max_queue_delay_us": _optional_int,
    "max_queue_size": _optional_int,
    "max_message_bytes": _int,
    "grace_seconds": float,
    "log_level": str,
    "models": lambda text: tuple(n.strip() for n in text.split(",") if n.strip()),
}


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        variable = f"CNNSERVE_{name.upper()}"
        if variable in environ:
            try:
                values[name] = parse(environ[variable])
            except ValueError:
                raise SettingsError(f"{variable}={environ[variable]!r}: expected {_expectation(name)}") from None
    return values


def _expectation(name: str) -> str:
    return "a number" if name == "grace_seconds" else "an integer" if name not in ("repo", "host") else "text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` flags; each defaults to None so that the environment and defaults can apply."""
    d = Settings()

    def add(flag: str, kind: Callable[[str], Any], help_text: str, **kw: Any) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        variable = "CNNSERVE_" + ("MODELS" if dest == "models" else dest.upper())
        default = getattr(d, dest, None)
        shown = "from config.json" if default is None else default
        parser.add_argument(flag, type=kind, default=None, help=f"{help_text} [{variable}; default: {shown}]", **kw)

    add("--repo", str, "model repository folder")
    add("--host", str, "bind address")
    add("--grpc-port", int, "gRPC port (0: a free one)")
    add("--metrics-port", int, "Prometheus /metrics port (0: a free one, -1: off)")
    add("--device", str, "execution provider", choices=("auto", "cpu", "cuda"))
    add("--intra-op-threads", int, "ONNX Runtime intra-op threads (0: one per core)")
    add("--inter-op-threads", int, "ONNX Runtime inter-op threads (0: its default)")
    add("--instances", int, "ONNX Runtime sessions per model")
    add("--max-batch-size", int, "override every model's max_batch_size")
    add("--max-queue-delay-us", int, "override every model's max_queue_delay_us")
    add("--max-queue-size", int, "queued requests per model before RESOURCE_EXHAUSTED (default: 8x max batch)")
    add("--max-message-bytes", int, "largest gRPC message")
    add("--grace-seconds", float, "time accepted requests get to finish on SIGTERM")
    add("--log-level", str, "log level", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        default=None,
        metavar="NAME",
        help="serve only this entry (repeatable) [CNNSERVE_MODELS, comma-separated; default: every entry]",
    )
