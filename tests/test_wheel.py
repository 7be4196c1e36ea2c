"""The wheel, built from the sources alone as the Dockerfile's wheel stage builds it (`pip wheel
--no-deps .`): it installs one import name, ``cnnserve``, with the mapped folders inside it, and
its compiled module works in a fresh virtual environment: no file of this checkout's editable
install is needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the Dockerfile's base stage copies into the image before the wheel stage builds.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "cnnserve", "builders", "server", "client", "proto")


def test_the_wheel_installs_one_name_with_a_working_extension(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy(path, src / name)
    wheels = tmp_path / "wheels"
    # Without build isolation: the test venv's setuptools, nothing fetched.
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels)]
    subprocess.run([*build, str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("cnnserve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("cnnserve/go/_fastgo.") and n.endswith(".so") for n in names), names
    # One name in site-packages beside the dist-info, whatever the folders are called in the tree.
    tops = {n.split("/", 1)[0] for n in names}
    assert len(tops) == 2 and {top for top in tops if not top.endswith(".dist-info")} == {"cnnserve"}, tops
    for module in (
        "server/parallel/worker.py",
        "server/grpc/kserve_v2.py",
        "client/bench.py",
        "builders/registry.py",
        "builders/imagenet_classes.txt",
        "builders/trained/alphago_policy.pt",
        "builders/trained/alphago_policy.json",
        "generated/inference/grpc_service_pb2.py",
    ):
        assert f"cnnserve/{module}" in names
    assert not any("/tests/" in n or n.startswith("bench/") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert b"cnnserve = cnnserve.cli:main" in entry_points

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    # The wheel unpacked into the new environment (no dependencies: the module needs none).
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    zipfile.ZipFile(wheel).extractall(site)
    # A lone black stone in the corner, captured by white's two stones: the C rules, for real.
    check = (
        "from cnnserve.go import _fastgo; from array import array\n"
        "stones = bytearray(361); placed = array('i', [-1]) * 361\n"
        "assert _fastgo.play(stones, placed, 1, 0, 0, -1) == ([], -1)\n"
        "assert _fastgo.play(stones, placed, 2, 1, 1, -1) == ([], -1)\n"
        "assert _fastgo.play(stones, placed, 2, 19, 2, -1) == ([0], -1)\n"
        "assert stones[0] == 0 and placed[0] == -1 and _fastgo.illegal(stones, 1, 0, -1) == 3\n"
        "import importlib.util as u\n"
        "assert u.find_spec('cnnserve.server.parallel.worker') and u.find_spec('cnnserve.client.gtp')\n"
        "assert not any(u.find_spec(old) for old in ('server', 'client', 'builders'))\n"
        "print(_fastgo.__file__)"
    )
    done = subprocess.run([python, "-c", check], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.startswith(site), done.stdout
