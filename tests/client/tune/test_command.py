"""``cnnserve tune`` end to end on lenet5 over a tiny space: real servers started and stopped by
the command, real load, the files it writes, resuming, --apply, and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import cli
from inprocess import in_process
from tunespace import tiny


@pytest.fixture()
def repo(small_repo: Path, tmp_path: Path) -> Path:
    shutil.copytree(small_repo / "lenet5", tmp_path / "repo" / "lenet5")
    return tmp_path / "repo"


def test_a_tiny_sweep_chooses_a_measured_point_within_budget_and_resumes(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = cli("tune", "lenet5", "--repo", str(repo), "--out", str(out), "--latency-budget-ms", "500", *tiny())
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.stdout.count("server pid") >= 2
    report = json.loads((out / "tune.json").read_text())
    model = report["models"]["lenet5"]
    measured = [m["point"] for m in model["measured"]]
    assert len(measured) == 2 and measured[0]["max_queue_delay_us"] == 2000  # export's default first
    chosen = model["chosen"]
    assert chosen["point"] in measured
    assert chosen["level"]["p99_ms"] <= 500 and chosen["level"]["requests"] > 0
    assert chosen["level"]["items_per_second"] == max(
        max(level["items_per_second"] for level in m["levels"] if level["p99_ms"] <= 500) for m in model["measured"])
    assert model["verdict"].startswith("lenet5: chosen for the most items a second with p99 within 500 ms")
    for name in ("tune.md", "tune.png", "results.jsonl"):
        assert (out / name).stat().st_size > 0
    assert (out / "tune.png").read_bytes().startswith(b"\x89PNG")
    table = (out / "tune.md").read_text()
    assert "| chosen" in table and "default" in table and "![throughput against latency](tune.png)" in table
    assert len((out / "results.jsonl").read_text().splitlines()) == 2

    again = cli("tune", "lenet5", "--repo", str(repo), "--out", str(out), "--latency-budget-ms", "500", "--no-confirm",
                *tiny())  # fmt: skip
    assert again.returncode == 0, again.stderr + again.stdout
    assert "resuming from" in again.stdout and again.stdout.count("measured before") == 2
    assert "server pid" not in again.stdout  # nothing measured twice
    assert json.loads((out / "tune.json").read_text())["models"]["lenet5"]["chosen"]["point"] == chosen["point"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_a_budget_nothing_meets_says_so_and_fails(repo: Path, tmp_path: Path) -> None:
    run = cli("tune", "lenet5", "--repo", str(repo), "--out", str(tmp_path / "out"), "--latency-budget-ms", "0.001",
              *tiny(queue_delays_us="2000", concurrency="1"))  # fmt: skip
    assert run.returncode == 1, run.stderr + run.stdout
    assert "no point measured meets the goal for lenet5" in run.stderr
    assert "lenet5: no point measured meets the goal (the most items a second with p99 within 0.001 ms)" in run.stdout
    assert "over the 0.001 ms budget" in (tmp_path / "out" / "tune.md").read_text()


def test_apply_writes_a_config_the_server_loads_and_keeps_the_old_one(repo: Path, tmp_path: Path) -> None:
    original = (repo / "lenet5" / "config.json").read_bytes()
    out = tmp_path / "out"
    flags = tiny(queue_delays_us="2000", instances="1,2")  # two points: one instance or two
    run = cli("tune", "lenet5", "--repo", str(repo), "--out", str(out), "--apply", "--no-confirm", *flags)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "applied to" in run.stdout and "cnnserve serve --repo" in run.stdout
    kept = list((repo / "lenet5").glob("config.json.*.bak"))
    assert len(kept) == 1 and kept[0].read_bytes() == original
    chosen = json.loads((out / "tune.json").read_text())["models"]["lenet5"]["chosen"]
    written = json.loads((repo / "lenet5" / "config.json").read_text())
    assert written["instance_group"] == [{"count": chosen["point"]["instances"], "kind": "KIND_AUTO"}]
    assert written["tuning"]["tool"] == "cnnserve tune" and written["tuning"]["server_flags"] == ["--workers", "1"]
    with in_process(repo) as served:  # the server's defaults: config.json decides
        model = served.server.models.models["lenet5"]
        assert model.config is not None and model.runner is not None
        assert model.config.max_batch_size == chosen["point"]["max_batch_size"]
        assert model.config.max_queue_delay_us == chosen["point"]["max_queue_delay_us"]
        assert list(model.config.preferred_batch_sizes) == chosen["preferred_sizes"]
        assert model.runner.instances == chosen["point"]["instances"]


def test_ctrl_c_stops_the_servers_it_started(repo: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cnnserve", "tune", "lenet5", "--repo", str(repo), "--out", str(tmp_path / "out"),
               *tiny(queue_delays_us="2000", concurrency="1", seconds="600")]  # fmt: skip
    tune = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    assert tune.stdout is not None
    lines = []
    try:
        for line in tune.stdout:
            lines.append(line)
            if "server pid" in line:
                break
        pid = int(lines[-1].split("server pid")[1].split()[0])
        assert Path(f"/proc/{pid}").exists()
        tune.send_signal(signal.SIGINT)
        rest = tune.communicate(timeout=120)[0]
    finally:
        if tune.poll() is None:
            tune.kill()
    assert tune.returncode == 130, "".join(lines) + rest
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
    assert "interrupted: the servers are stopped" in rest
