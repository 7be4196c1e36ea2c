"""The results file: resuming reuses what was measured with the same settings, and only that."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnserve.client.channel import ClientError
from cnnserve.client.tune.results import Measured, Results
from cnnserve.client.tune.space import Point
from cnnserve.client.tune.sweep import Level, Settings

HOW = Settings((1, 2, 4), 3.0, 1.0, 1, 50.0, 99)
POINT = Point(16, "export", 2000, 1, 1, 0, "auto")
LEVEL = Level(4, 900, 0, 3.0, 300.0, 5.0, 8.0, 9.5, 1.0, 2.0, 3.2)


def test_points_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    first = Results(path, HOW)
    measured = Measured("lenet5", POINT, (LEVEL,), start_seconds=0.6)
    first.add(measured)
    first.add(Measured("lenet5", Point(8, "max", 0, 1, 1, 0, "auto"), failed="the server did not start: boom"))
    again = Results(path, HOW)
    assert again.get("lenet5", POINT) == measured
    assert again.get("resnet50", POINT) is None
    assert len(again.of("lenet5")) == 2 and again.other_settings == 0


def test_points_measured_otherwise_are_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    Results(path, HOW).add(Measured("lenet5", POINT, (LEVEL,)))
    other = Results(path, Settings((1, 2, 4), 3.0, 1.0, 1, 20.0, 99))  # another budget stops sweeps elsewhere
    assert other.get("lenet5", POINT) is None and other.other_settings == 1


def test_a_last_line_cut_short_is_measured_again(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    Results(path, HOW).add(Measured("lenet5", POINT, (LEVEL,)))
    with path.open("a") as f:
        f.write('{"model": "lenet5", "how": ')  # killed mid-write
    assert len(Results(path, HOW).measured) == 1


def test_a_damaged_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    line = json.dumps(Measured("lenet5", POINT, (LEVEL,)).to_json(HOW))
    path.write_text("not json\n" + line + "\n")
    with pytest.raises(ClientError, match=r"results.jsonl, line 1: not a tune result"):
        Results(path, HOW)
