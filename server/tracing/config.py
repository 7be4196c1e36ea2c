"""Tracing's settings, by Triton's names: ``--trace-config`` entries at start, and the
trace-setting API's (``trace_level``, ``trace_rate``, ``trace_count``, ``trace_file``,
``log_frequency``) at run time, for the server and for each model.

- ``level``: ``OFF`` or ``TIMESTAMPS`` (Triton's ``TENSORS`` is not offered: a trace of every
  tensor of a CNN's batch is megabytes).
- ``rate``: one request in ``rate`` is traced (0: only those that arrive with a W3C
  ``traceparent``, as Triton's OpenTelemetry mode has it).
- ``count``: traces left to take; -1 for no end. Each trace taken counts it down.
- ``mode``: ``triton`` (Triton's JSON trace file, ``file`` and ``log-frequency``) or
  ``opentelemetry`` (spans over OTLP to ``url``, batched by the SDK's span processor:
  ``bsp_max_queue_size``, ``bsp_schedule_delay`` in ms, ``bsp_max_export_batch_size``; 0 takes
  the SDK's default or its ``OTEL_BSP_*`` variable; ``resource=KEY=VALUE`` adds a resource
  attribute). The mode, file and log frequency are the server's, set at start: the API shows
  them and refuses to change them (a client must not point the server's writes at a path).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LEVELS = ("OFF", "TIMESTAMPS")
MODES = ("triton", "opentelemetry")
# The trace-setting API's names, and the field each is.
API_NAMES = {"trace_level": "level", "trace_rate": "rate", "trace_count": "count", "trace_file": "file",
             "log_frequency": "log_frequency", "trace_mode": "mode"}  # fmt: skip
# Set at start only: the API answers them, and refuses a value other than the server's.
FIXED = ("trace_file", "log_frequency", "trace_mode")
_INTEGERS = ("rate", "count", "log_frequency", "bsp_max_queue_size", "bsp_schedule_delay",
             "bsp_max_export_batch_size")  # fmt: skip


@dataclass(frozen=True)
class TraceSettings:
    level: str = "OFF"
    rate: int = 1000
    count: int = -1
    mode: str = "triton"
    file: str = ""
    log_frequency: int = 0
    url: str = ""  # opentelemetry: "" takes OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or the SDK's default
    bsp_max_queue_size: int = 0
    bsp_schedule_delay: int = 0
    bsp_max_export_batch_size: int = 0
    resource: tuple[str, ...] = ()  # KEY=VALUE

    def to_api(self) -> dict[str, str | list[str]]:
        """As the trace-setting API answers: every value a string, the level a list of them."""
        return {"trace_level": [self.level], "trace_rate": str(self.rate), "trace_count": str(self.count),
                "trace_file": self.file, "log_frequency": str(self.log_frequency), "trace_mode": self.mode}  # fmt: skip

    def changed(self, given: Mapping[str, Any]) -> TraceSettings:
        """These settings with the API's ``given`` applied (strings, or a list of strings for the
        level, as tritonclient sends them); ValueError naming the first wrong one."""
        values: dict[str, Any] = {}
        for name, value in given.items():
            if name not in API_NAMES:
                raise ValueError(f"trace setting {name!r} is not one of {', '.join(API_NAMES)}")
            values[API_NAMES[name]] = _api_value(name, value)
        return _checked(dataclasses.replace(self, **values))


def _api_value(name: str, value: Any) -> Any:
    if name == "trace_level":
        levels = [value] if isinstance(value, str) else value
        if not (isinstance(levels, list) and len(levels) == 1 and levels[0] in LEVELS):
            raise ValueError(f"trace setting 'trace_level': expected one of {', '.join(LEVELS)}, got {value!r}")
        return levels[0]
    if name in ("trace_file", "trace_mode"):
        if not isinstance(value, str):
            raise ValueError(f"trace setting {name!r}: expected a string, got {value!r}")
        return value
    try:
        return int(value, 10) if isinstance(value, str) else _int(value)
    except (TypeError, ValueError):
        raise ValueError(f"trace setting {name!r}: expected an integer, got {value!r}") from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


def _checked(s: TraceSettings) -> TraceSettings:
    if s.level not in LEVELS:
        raise ValueError(f"trace level: expected one of {', '.join(LEVELS)}, got {s.level!r}")
    if s.mode not in MODES:
        raise ValueError(f"trace mode: expected {' or '.join(MODES)}, got {s.mode!r}")
    if s.rate < 0:
        raise ValueError(f"trace rate: expected an integer, 0 or more, got {s.rate}")
    if s.count < -1:
        raise ValueError(f"trace count: expected an integer, -1 (no end) or more, got {s.count}")
    for name in _INTEGERS[2:]:
        if getattr(s, name) < 0:
            raise ValueError(f"trace {name.replace('_', ' ')}: expected an integer, 0 or more, got {getattr(s, name)}")
    for entry in s.resource:
        if not entry.partition("=")[0] or "=" not in entry:
            raise ValueError(f"trace resource {entry!r}: expected KEY=VALUE")
    return s


_GLOBAL = {"level": "level", "rate": "rate", "count": "count", "mode": "mode"}
_BSP = ("bsp_max_queue_size", "bsp_schedule_delay", "bsp_max_export_batch_size")
_BY_MODE = {
    "triton": {"file": "file", "log-frequency": "log_frequency"},
    "opentelemetry": {"url": "url", "resource": "resource", **{name: name for name in _BSP}},
}


def from_entries(entries: Sequence[str]) -> TraceSettings:
    """``--trace-config`` entries as Triton takes them: ``SETTING=VALUE`` for the global ones
    (level, rate, count, mode), ``MODE,SETTING=VALUE`` for a mode's own; ValueError naming the
    entry otherwise."""
    values: dict[str, Any] = {}
    for entry in entries:
        mode, _, rest = entry.partition(",") if "," in entry.split("=", 1)[0] else ("", "", entry)
        key, sep, value = rest.partition("=")
        table = _BY_MODE.get(mode) if mode else _GLOBAL
        if table is None:
            raise ValueError(f"--trace-config {entry!r}: {mode!r} is not a trace mode ({' or '.join(MODES)})")
        if not sep or key not in table:
            where = f"{mode}," if mode else ""
            raise ValueError(f"--trace-config {entry!r}: expected {where}SETTING=VALUE with SETTING one of "
                             f"{', '.join(table)}")  # fmt: skip
        field = table[key]
        if field in _INTEGERS:
            try:
                values[field] = int(value, 10)
            except ValueError:
                raise ValueError(f"--trace-config {entry!r}: {key} takes an integer") from None
        elif field == "resource":  # repeatable: each adds an attribute
            values["resource"] = (*values.get("resource", ()), value)
        else:
            values[field] = value.upper() if field == "level" else value
    return _checked(TraceSettings(**values))


class TraceTable:
    """The server's trace settings and each model's overrides, with Triton's rules: a model's
    first change copies the server's values for the settings it does not name; a setting given as
    None (JSON null) goes back to the server's; a change naming no setting drops the model's
    overrides altogether."""

    def __init__(self, settings: TraceSettings) -> None:
        self.server = settings
        self.models: dict[str, dict[str, Any]] = {}  # model -> the API values it sets itself
        self._effective: dict[str, TraceSettings] = {}  # model -> its settings, kept for the hot path
        self.active = settings.level != "OFF"  # whether any request can be traced

    def of(self, model: str = "") -> TraceSettings:
        return self._effective.get(model, self.server) if model else self.server

    def _refresh(self) -> None:
        self._effective = {name: self.server.changed(own) for name, own in self.models.items()}
        self.active = any(s.level != "OFF" for s in (self.server, *self._effective.values()))

    def change(self, given: Mapping[str, Any], model: str = "") -> TraceSettings:
        """Apply an API change (ValueError naming what is wrong; nothing changes then); the
        settings that hold afterwards for ``model`` (or the server)."""
        current = self.server.to_api()
        for name in FIXED:
            if given.get(name) is not None and str(given[name]) != current[name]:
                raise ValueError(f"trace setting {name!r} is the server's, set at start by --trace-config "
                                 f"(it is {current[name]!r}); a client cannot change it")  # fmt: skip
        if not model:
            cleared = {k for k, v in given.items() if v is None}
            if cleared:
                raise ValueError(f"trace setting {sorted(cleared)[0]!r}: the server's settings cannot be cleared")
            self.server = self.server.changed(given)
            self._refresh()
            return self.server
        if not given:
            self.models.pop(model, None)
            self._refresh()
            return self.server
        own = dict(self.models.get(model) or self.server.to_api())
        for name, value in given.items():
            if value is None:
                own.pop(name, None)
            else:
                own[name] = value
        settings = self.server.changed(own)  # checked before anything is kept
        self.models[model] = own
        self._refresh()
        return settings

    def state(self) -> dict[str, Any]:
        """What clients changed, as JSON: for the other workers of the server to take."""
        return {"server": self.server.to_api(), "models": self.models}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take another worker's ``state`` (ValueError when it is not one)."""
        server = self.server.changed(state["server"])
        models = {str(name): dict(own) for name, own in state["models"].items()}
        for own in models.values():
            server.changed(own)
        self.server, self.models = server, models
        self._refresh()


OTLP_PROTOCOLS = {
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http",
    "grpc": "opentelemetry.exporter.otlp.proto.grpc",
}


def otlp_protocol() -> str:
    """The OTLP protocol the environment asks for, as OpenTelemetry's SDKs read it."""
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )


def otel_problem() -> str:
    """Why ``mode=opentelemetry`` cannot start here ("" when it can): an OTLP protocol other than
    HTTP's or gRPC's in the environment, or the SDK or its exporter missing. Checked with the
    settings, before anything starts, without importing the SDK."""
    protocol = otlp_protocol()
    if protocol not in OTLP_PROTOCOLS:
        return f"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL {protocol!r}: expected {' or '.join(OTLP_PROTOCOLS)}"
    for module in ("opentelemetry.sdk.trace", OTLP_PROTOCOLS[protocol]):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return (f"mode=opentelemetry needs {module} (pip install opentelemetry-sdk "
                    f"opentelemetry-exporter-otlp-proto-{protocol.split('/')[0]})")  # fmt: skip
    return ""
