"""The controller's side of GTP: an engine (GNU Go, ``cnnserve gtp``, any GTP program) run as a
subprocess and sent one command at a time, as gogui-twogtp and gomill drive theirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

# Debian installs GNU Go in /usr/games, which is not on every PATH.
GNUGO_PLACES = ("/usr/games/gnugo", "/usr/bin/gnugo", "/usr/local/bin/gnugo")


class GtpError(RuntimeError):
    """An engine refused a command (``? ...``), or ended while answering one."""


def find_gnugo() -> str | None:
    """GNU Go's executable: on PATH, or where Debian puts it; None when it is not installed."""
    return shutil.which("gnugo") or next((p for p in GNUGO_PLACES if os.access(p, os.X_OK)), None)


class GtpEngine:
    """One engine subprocess; :meth:`send` returns a successful reply's text."""

    def __init__(
        self, argv: Sequence[str], name: str = "engine", *, cwd: Path | None = None, stderr: int = subprocess.DEVNULL
    ) -> None:
        self.name = name
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=cwd
        )

    def send(self, command: str) -> str:
        ok, text = self.ask(command)
        if not ok:
            raise GtpError(f"{self.name} refused {command!r}: ? {text}")
        return text

    def ask(self, command: str) -> tuple[bool, str]:
        """(success, the reply without its ``=`` or ``?``) of one command."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(command + "\n")
            stdin.flush()
        except OSError as exc:
            raise GtpError(f"{self.name} ended before {command!r}: {exc}") from None
        lines: list[str] = []
        while True:
            line = stdout.readline()
            if line == "":
                raise GtpError(f"{self.name} ended while answering {command!r}")
            line = line.rstrip("\r\n")
            if line == "" and lines:
                break
            if line or lines:
                lines.append(line)
        head = lines[0][:1]
        if head not in ("=", "?"):
            raise GtpError(f"{self.name}: not a GTP reply to {command!r}: {lines[0]!r}")
        return head == "=", "\n".join([lines[0][1:].strip(), *lines[1:]]).strip()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(GtpError, OSError):
                GtpEngine.ask(self, "quit")  # this class's reading, whatever a subclass does with ask
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> GtpEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
