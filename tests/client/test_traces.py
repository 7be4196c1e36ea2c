"""`cnnserve bench --trace`: the slowest requests' stages from the server's own spans, received
over OTLP/HTTP by bench itself (the server exports over HTTP, its default protocol)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from harness import at, cli
from inprocess import in_process
from otlp import free_port


def test_bench_shows_where_the_slowest_requests_time_went(small_repo: Path) -> None:
    port = free_port()
    entries = ("level=TIMESTAMPS", "rate=0", "mode=opentelemetry", f"opentelemetry,url=http://127.0.0.1:{port}/v1/traces",
               "opentelemetry,bsp_schedule_delay=100")  # fmt: skip
    with in_process(small_repo, models=("lenet5",), trace_config=entries) as server:
        done = cli("bench", "--model", "lenet5", "--concurrency", "4", "--requests", "60", "--json", "--trace",
                   "--trace-listen", f"127.0.0.1:{port}", "--trace-slowest", "3", *at(server))  # fmt: skip
        table = cli("bench", "--model", "lenet5", "--requests", "20", "--trace", "--trace-listen",
                    f"127.0.0.1:{port}", "--trace-slowest", "2", *at(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    slowest = result["slowest"]
    assert len(slowest) == 3 and [r["client_ms"] for r in slowest] == sorted((r["client_ms"] for r in slowest),
                                                                              reverse=True)  # fmt: skip
    for row in slowest:
        assert re.fullmatch("[0-9a-f]{32}", row["trace_id"])
        assert 0 < row["server_ms"] <= row["client_ms"] and row["outside_ms"] >= 0
        assert row["compute_ms"] > 0 and row["read_ms"] >= 0 and row["queue_ms"] >= 0 and row["reply_ms"] >= 0
        parts = row["read_ms"] + row["queue_ms"] + row["compute_ms"] + row["reply_ms"]
        assert parts <= row["server_ms"] + 1e-6  # the stages lie within the server's span
        assert row["batch_size"] >= 1 and row["worker_pid"] == os.getpid()  # the server runs in this process
    assert table.returncode == 0, table.stderr
    assert "the 2 slowest requests, from the server's spans (ms):" in table.stdout
    assert "read+decode" in table.stdout and "no spans" not in table.stdout


def test_a_server_that_sends_no_spans_is_said_so(small_repo: Path) -> None:
    with in_process(small_repo, models=("lenet5",)) as server:
        done = cli("bench", "--model", "lenet5", "--requests", "10", "--trace", "--trace-listen", "127.0.0.1:0",
                   "--trace-wait", "0.5", "--trace-slowest", "2", *at(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no spans of these requests reached 127.0.0.1:0 within 0.5 s; start the server with" in done.stderr
    assert done.stdout.count("no spans") == 2
