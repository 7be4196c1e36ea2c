"""What ``cnnserve compare --tuned`` needs of a tune: each model's chosen point, read from the
folder ``cnnserve tune`` wrote, and a server started at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnserve.client.channel import ClientError
from cnnserve.client.tune import launch
from cnnserve.client.tune.space import Point


@dataclass(frozen=True)
class Tuned:
    """One model's chosen point, and the callers it served best at under the goal."""

    model: str
    point: Point
    export_preferred: tuple[int, ...]
    concurrency: int

    @property
    def describe(self) -> str:
        return self.point.describe(self.export_preferred)


@dataclass(frozen=True)
class Tune:
    folder: Path
    repo: str
    cuda: bool
    date: str
    goal: dict[str, Any]
    models: dict[str, Tuned]  # the models a point was chosen for

    def summary(self) -> str:
        goal = self.goal
        budget = goal.get("budget_ms")
        what = f"p{goal['percentile']} within {budget:g} ms" if budget else "no latency budget"
        return f"each model at the configuration `cnnserve tune` chose for it on {self.date} ({what})"


def read(folder: str | Path) -> Tune:
    """The tune that wrote ``folder/tune.json``; ClientError, saying why, where there is none."""
    path = Path(folder) / "tune.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = {}
        for name, model in data["models"].items():
            chosen = model["chosen"]
            if chosen is None or chosen["level"] is None:
                continue
            models[name] = Tuned(name, Point(**chosen["point"]), tuple(model["export_preferred"]),
                                 int(chosen["level"]["concurrency"]))  # fmt: skip
        return Tune(Path(folder), data["repo"], bool(data["cuda"]), data["date"], data["goal"], models)
    except OSError as exc:
        raise ClientError(f"--tuned: cannot read {path} (run `cnnserve tune MODEL... --out {folder}` first): "
                          f"{exc.strerror or exc}") from None  # fmt: skip
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ClientError(f"--tuned: {path} is not what cnnserve tune writes ({exc!r})") from None


@contextmanager
def serving(tune: Tune, tuned: Tuned, repo: str | None = None) -> Iterator[launch.Started]:
    """A server for ``tuned.model`` at its chosen point, over the tune's repository or ``repo``."""
    device = "cuda" if tune.cuda else "cpu"
    try:
        flags = tuned.point.server_flags(tuned.export_preferred)
        with launch.serving(repo or tune.repo, tuned.model, device, flags) as server:
            yield server
    except launch.StartFailed as exc:
        raise ClientError(f"{tuned.model}: the server at its tuned configuration did not start: {exc}") from None
