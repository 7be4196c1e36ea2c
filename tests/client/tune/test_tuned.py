"""``cnnserve compare --tuned``: each model on a server at the configuration a tune chose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness import cli
from tunespace import tiny


def test_compare_runs_each_model_at_its_tuned_configuration(small_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name in ("lenet5", "cifar_resnet20"):
        shutil.copytree(small_repo / name, repo / name)
    tuned = tmp_path / "tuned"
    run = cli("tune", "lenet5", "cifar_resnet20", "--repo", str(repo), "--out", str(tuned), "--no-confirm",
              *tiny(queue_delays_us="0"))  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    chosen = {name: model["chosen"] for name, model in json.loads((tuned / "tune.json").read_text())["models"].items()}

    out = tmp_path / "report"
    compared = cli("compare", "--tuned", str(tuned), "--out", str(out), "--seconds", "0.5")
    assert compared.returncode == 0, compared.stderr + compared.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["tuned"] == str(tuned) and {p["model"] for p in report["points"]} == {"lenet5", "cifar_resnet20"}
    for point in report["points"]:
        assert point["callers"] == chosen[point["model"]]["level"]["concurrency"]
        assert point["configuration"] == chosen[point["model"]]["describe"]
        assert point["items_per_second"] > 0
    page = (out / "report.md").read_text()
    assert "Each model at the configuration `cnnserve tune` chose for it" in page and "tuned configuration" in page
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")

    one = cli("compare", "--tuned", str(tuned), "--models", "lenet5", "--out", str(tmp_path / "one"),
              "--seconds", "0.5")
    assert one.returncode == 0, one.stderr
    assert [p["model"] for p in json.loads((tmp_path / "one" / "report.json").read_text())["points"]] == ["lenet5"]


def test_compare_tuned_refuses_what_was_not_tuned(tmp_path: Path) -> None:
    nothing = cli("compare", "--tuned", str(tmp_path), "--out", str(tmp_path / "out"))
    assert nothing.returncode != 0
    assert f"--tuned: cannot read {tmp_path / 'tune.json'} (run `cnnserve tune MODEL... --out {tmp_path}` first)" in (
        nothing.stderr)
    (tmp_path / "tune.json").write_text(json.dumps({"repo": "r", "cuda": False, "date": "d", "goal": {},
                                                    "models": {"lenet5": {"chosen": None}}}))  # fmt: skip
    untuned = cli("compare", "--tuned", str(tmp_path), "--models", "lenet5", "--out", str(tmp_path / "out"))
    assert untuned.returncode != 0
    assert "chose no configuration for lenet5 (it chose one for: none)" in untuned.stderr
