"""Log settings at run time, as Triton's logging extension has them: GET/POST /v2/logging and
gRPC LogSettings with the stock clients, wrong settings refused by name, and the server's own
output changing while it runs, with one process and with several workers."""

from __future__ import annotations

import json
import logging
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
from harness import ServerProcess, http_call, serving
from inprocess import InProcessServer, in_process
from tritonclient.utils import InferenceServerException

from cnnserve.server import logs

DEFAULTS = {"log_file": "", "log_info": True, "log_warnings": True, "log_errors": True, "log_verbose_level": 0,
            "log_format": "default"}  # fmt: skip


@pytest.fixture()
def served(small_repo: Path) -> Iterator[InProcessServer]:
    before, level = logs.current(), logging.getLogger().level
    with in_process(small_repo, models=("lenet5",)) as server:
        yield server
    logs.apply(before)  # the settings are the process's: the next test starts where this one did
    logging.getLogger().setLevel(level)


def test_the_settings_start_from_the_log_level() -> None:
    assert logs.LogSettings.from_level("info").to_json() == DEFAULTS
    assert logs.LogSettings.from_level("debug").log_verbose_level == 1
    warning = logs.LogSettings.from_level("warning")
    assert (warning.log_info, warning.log_warnings, warning.log_errors) == (False, True, True)
    assert logs.LogSettings.from_level("error").log_warnings is False


@pytest.mark.parametrize(
    ("given", "message"),
    [({"log_level": 1}, "log setting 'log_level' is not one of log_file, log_info, log_warnings, log_errors, "
                        "log_verbose_level, log_format"),
     ({"log_info": "false"}, "log setting 'log_info': expected true or false, got 'false'"),
     ({"log_errors": 0}, "log setting 'log_errors': expected true or false, got 0"),
     ({"log_verbose_level": -1}, "log setting 'log_verbose_level': expected an integer, 0 or more, got -1"),
     ({"log_verbose_level": True}, "log setting 'log_verbose_level': expected an integer, 0 or more, got True"),
     ({"log_format": "json"}, "log setting 'log_format': expected default or ISO8601, got 'json'"),
     ({"log_file": "/etc/passwd"}, "log setting 'log_file': cnnserve logs to the console (stderr) and does not "
                                   "change that at run time, so that no client can make it write files; got "
                                   "'/etc/passwd'")],
)  # fmt: skip
def test_wrong_settings_are_refused_by_name(given: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        logs.LogSettings().changed(given)
    assert str(caught.value) == message
    assert logs.LogSettings().changed({"log_file": ""}) == logs.LogSettings()  # its own value is no change


def test_grpc_and_http_clients_read_and_change_them(served: InProcessServer) -> None:
    with tc.InferenceServerClient(served.grpc_address) as grpc_client:
        assert "logging" in grpc_client.get_server_metadata(as_json=True)["extensions"]
        assert grpc_client.get_log_settings(as_json=True)["settings"]["log_info"] == {"bool_param": True}
        changed = grpc_client.update_log_settings({"log_verbose_level": 2, "log_format": "ISO8601"}, as_json=True)
        assert changed["settings"]["log_verbose_level"] == {"uint32_param": 2}
        assert changed["settings"]["log_format"] == {"string_param": "ISO8601"}
        with pytest.raises(InferenceServerException) as caught:
            grpc_client.update_log_settings({"log_format": "xml"})
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "log setting 'log_format': expected default or ISO8601, got 'xml'" in caught.value.message()
    http_client = th.InferenceServerClient(served.http_address)
    try:
        # Every setting comes back, the ones not named unchanged (also what gRPC set).
        assert http_client.update_log_settings({"log_info": False}) == {
            **DEFAULTS, "log_info": False, "log_verbose_level": 2, "log_format": "ISO8601"}
        assert http_client.get_log_settings() == logs.current().to_json()
    finally:
        http_client.close()
    assert logs.current().log_info is False  # the server's own logging took it
    for body, message in ((b"[1]", "expected a JSON object of settings, got list"), (b"{", "the body is not JSON"),
                          (b'{"log_info": 1}', "log setting 'log_info': expected true or false, got 1")):  # fmt: skip
        status, reply = http_call(served, "POST", "/v2/logging", body)
        assert status == 400 and message in json.loads(reply)["error"]
    assert logs.current().log_info is False  # a refused change changes nothing


def _wait_for(server: ServerProcess, pattern: str, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in server.lines if re.search(pattern, line)]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} lines matching {pattern!r} not seen:\n{server.output}")


def test_the_output_changes_while_the_server_runs(small_repo: Path) -> None:
    # SIGHUP without TLS logs one INFO line, and signals are handled in order: the second one,
    # sent while INFO is off, is missing from between the first and the third.
    iso = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO "
    with serving(small_repo, "--model", "lenet5") as server:
        def post(settings: dict[str, object]) -> None:
            assert http_call(server, "POST", "/v2/logging", json.dumps(settings).encode())[0] == 200

        server.process.send_signal(signal.SIGHUP)
        first = _wait_for(server, "SIGHUP: no TLS files to renew", 1)[0]
        assert not re.match(iso, first)
        post({"log_info": False})
        server.process.send_signal(signal.SIGHUP)
        # The signal reaches the event loop through its wakeup pipe, not in line with the HTTP
        # calls: the next change waits until the loop has surely handled it (it logs nothing).
        time.sleep(1.0)
        post({"log_info": True, "log_format": "ISO8601"})
        server.process.send_signal(signal.SIGHUP)
        lines = _wait_for(server, "SIGHUP: no TLS files to renew", 2)
        time.sleep(0.5)
        assert len([line for line in server.lines if "SIGHUP: no TLS files" in line]) == 2
        assert re.match(iso, lines[1]), lines[1]


def test_a_change_through_one_worker_reaches_every_worker(small_repo: Path) -> None:
    with serving(small_repo, "--model", "lenet5", "--workers", "2") as server:
        assert http_call(server, "POST", "/v2/logging", b'{"log_verbose_level": 1}')[0] == 200
        _wait_for(server, r"supervisor .* log settings changed through worker \d", 1)
        # Each call a new connection: the kernel spreads them over both workers.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answers = [json.loads(http_call(server, "GET", "/v2/logging")[1])["log_verbose_level"] for _ in range(20)]
            if answers == [1] * 20:
                break
            time.sleep(0.1)
        assert answers == [1] * 20
