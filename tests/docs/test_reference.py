"""The documentation's reference pages against the code they describe: regenerated, they are what
is committed; every flag `cnnserve serve --help` prints is on the settings page with its variable
and default; every metric a running server exports is on the metrics page."""

from __future__ import annotations

import importlib.util
import re
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
from inprocess import InProcessServer

from cnnserve.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_reference", DOCS / "generate_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["settings", "cli", "metrics"])
def test_each_reference_page_is_the_generated_one(name: str) -> None:
    committed = (DOCS / "reference" / f"{name}.md").read_text(encoding="utf-8")
    assert _generator().pages()[name] == committed, f"docs/reference/{name}.md is stale: run `make generate`"


def test_every_serve_flag_is_on_the_settings_page_with_its_variable_and_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    # One entry per option: its first line starts with two spaces and the flag.
    options = capsys.readouterr().out.split("options:", 1)[1].split("\n  --", 1)[1]  # after -h, --help
    entries = re.split(r"\n(?=  --)", "  --" + options)
    shown = []
    for entry in entries:
        flag = re.match(r"\s*(--[a-z0-9-]+)", entry)
        assert flag is not None, entry
        found = re.findall(r"\(default: (.*?); env (CNNSERVE_[A-Z0-9_]+)\)", " ".join(entry.split()))
        assert len(found) == 1, entry
        shown.append((flag[1], *found[0]))
    assert len(shown) > 40
    page = (DOCS / "reference" / "settings.md").read_text(encoding="utf-8")
    rows = {row.split(" | ")[0]: row for row in page.splitlines() if row.startswith("| [`--")}
    assert len(rows) == len(shown)
    for flag, default, variable in shown:
        row = rows.get(f"| [`{flag}`](#{flag})")
        assert row is not None, f"{flag} is not in the settings table"
        assert f"| `{variable}` | {default} |" in row, (flag, row)
        assert f"\n## `{flag}`\n" in page, f"{flag} has no section"


def test_every_exported_metric_is_on_the_metrics_page(server: InProcessServer) -> None:
    # One answered request, so that the request series exist too.
    urllib.request.urlopen(f"http://{server.http_address}/v2/models/lenet5", timeout=30).read()
    with urllib.request.urlopen(f"http://{server.metrics_address}/metrics", timeout=30) as reply:
        exported = set(re.findall(r"^# TYPE (\S+) ", reply.read().decode(), re.MULTILINE))
    assert {"cnnserve_request_duration_seconds", "cnnserve_requests_total", "cnnserve_model_info"} <= exported
    page = (DOCS / "reference" / "metrics.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(cnnserve_[a-z_]+)` \|", page, re.MULTILINE))
    # prometheus_client adds a `_created` gauge (a timestamp) beside each counter and histogram.
    created = {name for name in exported if name.endswith("_created")}
    assert all({name[: -len("_created")], name[: -len("_created")] + "_total"} & listed for name in created)
    assert "`_created`" in page
    assert exported - created - listed == set(), "metrics exported but not on docs/reference/metrics.md"
    assert "cnnserve_worker_requests" in listed  # exported by workers of several only
