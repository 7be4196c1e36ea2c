"""``cnnserve go-train`` as a user runs it: a folder of games in, a checkpoint, history and chart out."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gogames import random_record
from harness import cli


@pytest.fixture
def games(tmp_path: Path) -> Path:
    folder = tmp_path / "games"
    folder.mkdir()
    for seed in range(8):
        (folder / f"game-{seed}.sgf").write_text(random_record(seed, 30))
    (folder / "nine.sgf").write_text("(;SZ[9];B[ee])")
    return folder


def test_a_run_and_its_resumption(games: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--k", "4", "--batch", "8", "--eval-every", "40", "--eval-positions", "20", "--held-out-fraction", "0.3"]
    done = cli("go-train", str(games), "--out", str(out), "--positions", "80", *flags)
    assert done.returncode == 0, done.stderr
    assert "8 games, 240 positions" in done.stderr and "skipped 1 (board size)" in done.stderr
    assert "held-out top-1" in done.stdout
    assert f"--option k=4 --checkpoint {out / 'checkpoint.pt'}" in done.stdout
    assert (out / "checkpoint.pt").exists() and (out / "history.png").stat().st_size > 0
    assert [json.loads(x)["positions"] for x in (out / "history.jsonl").read_text().splitlines()] == [40, 80]

    # Resumed in another precision: the bfloat16 forward pass is a setting a run may change.
    again = cli("go-train", str(games), "--out", str(out), "--positions", "120", "--precision", "bf16", *flags)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "at 80 positions" in again.stderr
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--k", "0"], "--k 0: expected at least 1"),
        (["--held-out-fraction", "1.5"], "--held-out-fraction 1.5: expected a fraction between 0 and 1"),
        (["--device", "tpu"], "--device tpu: expected cpu or cuda"),
        (["--precision", "fp8"], "--precision fp8: expected fp32 or bf16"),
    ],
)
def test_bad_settings_are_refused_by_name(games: Path, tmp_path: Path, flags: list[str], message: str) -> None:
    done = cli("go-train", str(games), "--out", str(tmp_path / "run"), *flags)
    assert done.returncode != 0 and message in done.stderr
    assert not (tmp_path / "run").exists()


def test_no_games_is_an_error(tmp_path: Path) -> None:
    done = cli("go-train", str(tmp_path), "--out", str(tmp_path / "run"))
    assert done.returncode != 0 and "no usable SGF games" in done.stderr
    done = cli("go-train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert done.returncode != 0 and "nowhere does not exist" in done.stderr


def test_sigterm_saves_where_the_run_stood(games: Path, tmp_path: Path) -> None:
    """kill (or a service manager) stops a run as Ctrl-C does: the checkpoint is saved first."""
    out = tmp_path / "run"
    flags = ["--k", "4", "--batch", "8", "--eval-every", "40", "--eval-positions", "20", "--held-out-fraction", "0.3"]
    command = [sys.executable, "-m", "cnnserve.cli", "go-train", str(games), "--out", str(out), *flags]
    run = subprocess.Popen([*command, "--positions", "100000000"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "history.jsonl").exists():  # past the first evaluation: training for real
            assert run.poll() is None and time.monotonic() < deadline, "go-train never evaluated"
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    stopped = re.search(r"stopped at ([\d,]+) positions; saved to", stderr)
    assert stopped is not None, stderr
    saved = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert saved["state"]["positions"] == int(stopped[1].replace(",", "")) >= 40
