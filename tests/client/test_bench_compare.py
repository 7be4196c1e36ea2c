"""`cnnserve bench` and `cnnserve compare` against a real server subprocess (no timings asserted)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import Served, at, cli
from PIL import Image

from cnnserve.client.compare import Facts, Point, claims

# -- bench -------------------------------------------------------------------------------------------


def test_bench_closed_loop_json(server: Served) -> None:
    done = cli("bench", "--model", "lenet5", "--concurrency", "4", "--requests", "120", "--json", *at(server))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["requests_ok"], result["requests_failed"], result["interrupted"]) == (120, 0, False)
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["items_per_second"] > 0 and result["mode"] == "closed loop, 4 callers"
    split = result["server"]
    assert split["runs"] >= 1 and 1 <= split["batch_size"] <= 4 and split["compute_ms"] > 0
    assert split["queue_ms"] >= 0
    assert "] 120/120 requests" in done.stderr  # the progress bar's last state


def test_bench_open_loop_and_classify(server: Served) -> None:
    done = cli("bench", "--model", "lenet5", "--rate", "50", "--duration", "2", "--json", *at(server))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["mode"] == "open loop at 50 req/s" and result["requests_ok"] > 10 and result["requests_failed"] == 0

    done = cli("bench", "--model", "cifar_resnet20", "--rpc", "classify", "--items", "3", "--requests", "10",
                    *at(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cifar_resnet20, Classify, 3 images/request, closed loop, 1 callers: 10 requests" in done.stdout
    assert "errors      none" in done.stdout and "mean batch 3.0" in done.stdout


def test_bench_errors_stop_at_once_in_one_line(server: Served) -> None:
    cases = [
        (["--model", "nope", *at(server)], "NOT_FOUND: model_name: unknown model 'nope'"),
        (["--model", "lenet5", "--items", "300", *at(server)],
         "INVALID_ARGUMENT: inputs: batch of 300 exceeds max_batch_size 256"),
        (["--model", "lenet5", "--server", "127.0.0.1:1"], "cannot reach a server at 127.0.0.1:1"),
    ]  # fmt: skip
    for args, message in cases:
        done = cli("bench", *args)
        assert done.returncode == 1 and done.stdout == "", done
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_bench_interrupted_prints_what_it_measured(server: Served) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnserve", "bench", "--model", "cifar_resnet20", "--duration", "120", "--json",
         *at(server)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As in a terminal: a test run started in the background (`make test &`) ignores SIGINT,
        # and the child would inherit that and never see the Ctrl-C this test sends.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        # Ctrl-C once the progress bar counts measured requests: after start-up, the preflight
        # request and the warm-up.
        assert process.stderr is not None
        seen = ""
        deadline = time.monotonic() + 60
        while not re.search(r"s, [1-9]\d* requests", seen) and time.monotonic() < deadline:
            seen += os.read(process.stderr.fileno(), 4096).decode(errors="replace") or "(end)"
            assert process.poll() is None, seen
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        err = seen + err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    result = json.loads(out)
    assert result["interrupted"] is True and result["requests_ok"] > 0 and result["seconds"] < 120


# -- compare -----------------------------------------------------------------------------------------


def test_compare_writes_table_chart_json_and_verdicts(server: Served, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = cli("compare", "--models", "lenet5,cifar_resnet20", "--batch", "1,4", "--requests", "5",
                    "--out", str(out), *at(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    measured = [(p["model"], p["batch"]) for p in report["points"]]
    assert measured == [("lenet5", 1), ("lenet5", 4), ("cifar_resnet20", 1), ("cifar_resnet20", 4)]
    assert all(p["requests"] == 5 and p["p50_ms"] > 0 and p["items_per_second"] > 0 for p in report["points"])
    assert report["models"]["cifar_resnet20"]["weight_layers"] == 20
    assert report["models"]["lenet5"] == {"model": "lenet5", "architecture": "lenet5", "weight_layers": 5,
                                          "parameters": 61706, "macs": 416520, "provider": "CPUExecutionProvider",
                                          "trained": True}  # fmt: skip
    assert report["claims"] == ["no ResNet deeper than a VGG among the models: the notes' claim is not checked here"]
    markdown = (out / "report.md").read_text()
    assert "| model | weight layers | parameters | MACs | provider | batch |" in markdown
    assert "| cifar_resnet20 | 20 | 270K | 40.6M | CPU | 4 |" in markdown
    with Image.open(out / "latency.png") as chart:
        assert chart.format == "PNG" and chart.size[0] > 800
    assert "cifar_resnet20" in done.stdout and "wrote" in done.stdout


def test_compare_refuses_before_measuring(server: Served, tmp_path: Path) -> None:
    cases = [
        (["--models", "lenet5,nope"], "model 'nope' is not in the server's repository"),
        (["--models", "lenet5", "--batch", "1,300"], "INVALID_ARGUMENT: inputs: batch of 300 exceeds max_batch_size"),
        (["--models", "lenet5", "--batch", "one"], "--batch: expected whole numbers"),
    ]
    for args, message in cases:
        done = cli("compare", *args, "--out", str(tmp_path / "r"), *at(server))
        assert done.returncode == 1, done
        assert message in done.stderr.splitlines()[-1], done.stderr
        assert not (tmp_path / "r").exists()
    done = cli("compare", "--models", "lenet5", "--server", "127.0.0.1:1", "--metrics", "127.0.0.1:1")
    assert done.returncode == 1 and "cannot read metrics at http://127.0.0.1:1/metrics" in done.stderr


def test_claims_compare_deeper_resnets_with_vggs() -> None:
    facts = {
        "vgg16": Facts("vgg16", "vgg_d", 16, 138_000_000, 15_500_000_000, "CPUExecutionProvider", False),
        "vgg19": Facts("vgg19", "vgg_e", 19, 144_000_000, 19_600_000_000, "CPUExecutionProvider", False),
        "resnet152": Facts("resnet152", "resnet152", 152, 60_000_000, 11_500_000_000, "CPUExecutionProvider", False),
        "resnet18": Facts("resnet18", "resnet18", 18, 11_700_000, 1_800_000_000, "CPUExecutionProvider", False),
    }
    points = [Point("vgg16", 1, 5, 150.0, 160.0, 6.6, 0.1, 149.0), Point("vgg19", 1, 5, 205.0, 210.0, 4.9, 0.1, 204.0),
              Point("resnet152", 1, 5, 118.0, 120.0, 8.4, 0.1, 117.0),
              Point("resnet18", 1, 5, 400.0, 401.0, 2.5, 0.1, 399.0)]  # fmt: skip
    lines = claims(facts, points)
    assert ("resnet152 (152 layers) faster than vgg16 (16 layers, 9.5x fewer) at batch 1: yes "
            "(118.0 ms against 150.0 ms, p50)") in lines  # fmt: skip
    assert any(line.startswith("resnet152 (152 layers) faster than vgg19") and ": yes" in line for line in lines)
    # resnet18 is deeper than vgg16 (18 > 16) and slower here.
    assert any(line.startswith("resnet18 (18 layers) faster than vgg16") and ": no" in line for line in lines)
    assert not any(line.startswith("resnet18 (18 layers) faster than vgg19") for line in lines)  # not deeper
    # Ranks by latency [1, 2, 0, 3], by MACs [2, 3, 1, 0], by depth [0, 2, 3, 1]: Spearman's rho
    # 1 - 6 * 12 / 60 = -0.2 and 1 - 6 * 14 / 60 = -0.4.
    assert ("at batch 1, latency follows MACs more closely: rank correlation with MACs -0.20, "
            "with weight layers -0.40") in lines  # fmt: skip


def test_bench_policy_sends_a_position_per_request(server: Served) -> None:
    done = cli("bench", "--model", "alphago_policy", "--rpc", "policy", "--concurrency", "4", "--requests", "20",
                    "--json", *at(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rpc"] == "policy" and result["requests_ok"] == 20 and result["requests_failed"] == 0
    assert result["server"]["runs"] >= 1 and 1 <= result["server"]["batch_size"] <= 4

    sgf = Path(__file__).resolve().parents[1] / "data" / "gnugo-selfplay.sgf"
    done = cli("bench", "--model", "alphago_policy", "--rpc", "policy", "--sgf", str(sgf), "--move", "121",
                    *at(server))  # fmt: skip
    assert done.returncode == 1 and "INVALID_ARGUMENT: move_number: 121" in done.stderr, done
    done = cli("bench", "--model", "lenet5", "--move", "3", *at(server))
    assert done.returncode == 1 and "--sgf and --move go with --rpc policy" in done.stderr, done
