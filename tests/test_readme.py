"""README's first calls, run as written against a real server: the tritonclient call over gRPC,
the curl calls over HTTP, and the Classify and Policy commands. Only the addresses change (the
server listens on free ports) and the paths (the commands run in a folder of their own)."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

from inprocess import InProcessServer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _block(heading: str, language: str) -> str:
    """The first ``language`` code block under README's ``## heading``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"README's {heading!r} has no {language} block"
    return match[1]


def _run_shell(script: str, cwd: Path) -> str:
    # curl fails on an HTTP error status, as a reader would notice one.
    prelude = 'set -euo pipefail\ncurl() { command curl --fail-with-body --silent --show-error "$@"; echo; }\n'
    done = subprocess.run(["bash", "-c", prelude + script], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_first_grpc_call(server: InProcessServer) -> None:
    code = _block("A first call over gRPC", "python").replace("localhost:8001", server.grpc_address)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    classes = re.findall(r"b'([0-9.e+-]+):(\d):(\d)'", out.getvalue())
    assert len(classes) == 3, out.getvalue()  # score:index:label, the digit's index is its label
    assert all(index == label for _, index, label in classes)


def test_the_http_calls(server: InProcessServer, tmp_path: Path) -> None:
    script = _block("Over HTTP", "sh").replace("localhost:8000", server.http_address)
    out = _run_shell(script, tmp_path)
    assert '"name":"lenet5"' in out.replace(" ", "")
    assert re.search(r'"data":\["[0-9.e+-]+:\d:\d","[0-9.e+-]+:\d:\d","[0-9.e+-]+:\d:\d"\]', out.replace(" ", "")), out


def test_classify_and_policy(server: InProcessServer, tmp_path: Path) -> None:
    script = (
        _block("Classify and Policy", "sh")
        .replace(".venv/bin/", f"{BIN}/")
        .replace("tests/data/", f"{ROOT}/tests/data/")
        .replace("cnnserve classify", f"cnnserve classify --server {server.grpc_address}")
        .replace("cnnserve policy", f"cnnserve policy --server {server.grpc_address}")
    )
    out = _run_shell(script, tmp_path)
    # The digit is a seven and lenet5 is trained: it says so first.
    assert re.search(r"^\s+1\s+7\s+7\s+0\.\d+$", out, re.MULTILINE), out
    assert "black to move after 30 moves" in out or "white to move after 30 moves" in out
    moves = re.findall(r"^\s+\d\s+([A-HJ-T]\d{1,2})\s+0\.\d+$", out, re.MULTILINE)
    assert len(moves) == 5, out
