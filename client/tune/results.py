"""The results file: one JSON line per point measured, appended as each is, so that a tune cut
short (Ctrl-C, ``--max-minutes``, a crash) resumes where it stopped and measures no point twice."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnnserve.client.channel import ClientError
from cnnserve.client.tune.space import Point
from cnnserve.client.tune.sweep import Level, Settings


@dataclass(frozen=True)
class Measured:
    """One point of one model: its levels, or why it could not be measured."""

    model: str
    point: Point
    levels: tuple[Level, ...] = ()
    failed: str = ""  # the server did not start, or no request succeeded
    start_seconds: float = 0.0
    gpu_memory_mib: float | None = None
    at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_json(self, how: Settings) -> dict[str, Any]:
        return {"model": self.model, "how": asdict(how), "point": asdict(self.point),
                "levels": [asdict(level) for level in self.levels], "failed": self.failed,
                "start_seconds": self.start_seconds, "gpu_memory_mib": self.gpu_memory_mib, "at": self.at}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measured:
        return cls(data["model"], Point(**data["point"]), tuple(Level(**level) for level in data["levels"]),
                   data["failed"], data["start_seconds"], data["gpu_memory_mib"], data["at"])  # fmt: skip


class Results:
    """``results.jsonl`` in the output folder: what was measured before with the same settings
    is taken from it; each new point is appended (and flushed) as soon as it is measured."""

    def __init__(self, path: Path, how: Settings) -> None:
        self.path = path
        self.how = how
        self.measured: dict[tuple[str, str], Measured] = {}
        self.other_settings = 0  # lines measured with other settings: not reused
        if path.exists():
            self._read()

    def _read(self) -> None:
        wanted = json.loads(json.dumps(asdict(self.how)))  # as the file has it: lists, not tuples
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if data["how"] != wanted:
                    self.other_settings += 1
                    continue
                measured = Measured.from_json(data)
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                if number == len(lines):
                    continue  # a last line cut short by a kill: that point is measured again
                raise ClientError(f"{self.path}, line {number}: not a tune result ({exc}); "
                                  f"move the file away to start afresh") from None  # fmt: skip
            self.measured[(measured.model, measured.point.key())] = measured

    def get(self, model: str, point: Point) -> Measured | None:
        return self.measured.get((model, point.key()))

    def add(self, measured: Measured) -> None:
        self.measured[(measured.model, measured.point.key())] = measured
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(measured.to_json(self.how), allow_nan=True) + "\n")
            f.flush()

    def of(self, model: str) -> list[Measured]:
        return [m for (name, _), m in self.measured.items() if name == model]
