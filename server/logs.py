"""The server's log settings, by Triton's names (its logging extension: GET/POST ``/v2/logging``
and gRPC LogSettings), applied to Python's logging while the server runs.

- ``log_info``, ``log_warnings``, ``log_errors``: whether INFO, WARNING and ERROR (with CRITICAL)
  records are written.
- ``log_verbose_level``: 0 writes no DEBUG record, 1 or more writes them all (Python's logging has
  one debug level where Triton has many).
- ``log_format``: ``default`` (local time, ``2026-12-06 15:40:00,123``) or ``ISO8601`` (UTC,
  ``2026-12-06T15:40:00.123Z``).
- ``log_file``: always ``""``, the console (stderr). It cannot be changed at run time: a client
  allowed to change log settings could otherwise make the server append, as itself, to any file it
  can write.

``--log-level`` sets where they start. The settings are the process's: :func:`configure` installs
one handler on the root logger; :func:`update` checks and applies a change and tells the
listener (a worker of several tells its supervisor, which passes it to the other workers).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cnnserve.server import errors

FORMATS = ("default", "ISO8601")


@dataclass(frozen=True)
class LogSettings:
    log_file: str = ""
    log_info: bool = True
    log_warnings: bool = True
    log_errors: bool = True
    log_verbose_level: int = 0
    log_format: str = "default"

    @classmethod
    def from_level(cls, level: str) -> LogSettings:
        """Where ``--log-level`` (debug, info, warning or error) starts them."""
        return cls(log_info=level in ("debug", "info"), log_warnings=level != "error",
                   log_verbose_level=1 if level == "debug" else 0)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changed(self, given: Mapping[str, Any]) -> LogSettings:
        """These settings with ``given`` applied; ValueError naming the first setting that is not
        one, or whose value is not what it takes."""
        names = [f.name for f in dataclasses.fields(self)]
        values = {}
        for name, value in given.items():
            if name not in names:
                raise ValueError(f"log setting {name!r} is not one of {', '.join(names)}")
            values[name] = _checked(name, value, self.log_file)
        return dataclasses.replace(self, **values)


def _checked(name: str, value: Any, log_file: str) -> Any:
    if name == "log_file":
        if value != log_file:
            raise ValueError(f"log setting 'log_file': cnnserve logs to the console (stderr) and does not change "
                             f"that at run time, so that no client can make it write files; got {value!r}")  # fmt: skip
        return value
    if name == "log_verbose_level":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"log setting 'log_verbose_level': expected an integer, 0 or more, got {value!r}")
        return value
    if name == "log_format":
        if value not in FORMATS:
            raise ValueError(f"log setting 'log_format': expected {' or '.join(FORMATS)}, got {value!r}")
        return value
    if not isinstance(value, bool):
        raise ValueError(f"log setting {name!r}: expected true or false, got {value!r}")
    return value


class _Gate(logging.Filter):
    """Lets a record through when the settings write its level."""

    def filter(self, record: logging.LogRecord) -> bool:
        s = _state.settings
        if record.levelno >= logging.ERROR:
            return s.log_errors
        if record.levelno >= logging.WARNING:
            return s.log_warnings
        if record.levelno >= logging.INFO:
            return s.log_info
        return s.log_verbose_level > 0


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if _state.settings.log_format == "ISO8601":
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        return super().formatTime(record, datefmt)


@dataclass
class _State:
    settings: LogSettings = dataclasses.field(default_factory=LogSettings)
    listener: Callable[[LogSettings], None] | None = None


_state = _State()


def configure(level: str, who: str = "") -> None:
    """Log to stderr from ``--log-level``; ``who`` starts each line's origin (a worker's number and pid)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s"))
    handler.addFilter(_Gate())
    root = logging.getLogger()
    for old in root.handlers[:]:  # a supervisor's first set-up, or a test's
        root.removeHandler(old)
    root.addHandler(handler)
    apply(LogSettings.from_level(level))


def current() -> LogSettings:
    return _state.settings


def apply(settings: LogSettings) -> None:
    """Take ``settings`` (checked already), without telling the listener."""
    _state.settings = settings
    # DEBUG records are not even made unless they are written.
    logging.getLogger().setLevel(logging.DEBUG if settings.log_verbose_level > 0 else logging.INFO)


def update(given: Mapping[str, Any]) -> LogSettings:
    """Check and apply a change (only the settings named change); tell the listener; the result.
    ValueError, naming the setting, when a setting or value is wrong: nothing changes then."""
    settings = _state.settings.changed(given)
    apply(settings)
    if _state.listener is not None:
        _state.listener(settings)
    return settings


def change(given: Mapping[str, Any]) -> dict[str, Any]:
    """What the front ends call (gRPC LogSettings, POST /v2/logging): :func:`update`, with a wrong
    setting or value an INVALID_ARGUMENT (HTTP 400) that names it; every setting as JSON."""
    try:
        return update(given).to_json()
    except ValueError as exc:
        raise errors.InvalidArgument(str(exc)) from None


def listen(listener: Callable[[LogSettings], None] | None) -> None:
    """Call ``listener`` with the settings after each :func:`update`."""
    _state.listener = listener
