"""The ``cnnserve`` command line. Its subcommands run through its own entry, ``main()``, in the
test's process (what a user sees: stdout, stderr, the exit status); what needs a process runs as
one: the console script itself, a pipe closed under it, an install without an extra."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
from harness import Served, cli

from cnnserve import __version__, builders
from cnnserve.repository import load_entry


def test_the_console_script_and_the_module_run_as_a_user_runs_them() -> None:
    script = shutil.which("cnnserve", path=str(Path(sys.executable).parent))
    assert script is not None
    for command in ([script], [sys.executable, "-m", "cnnserve"]):
        done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60, check=False)
        assert (done.returncode, done.stdout) == (0, f"cnnserve {__version__}\n"), done.stderr
    done = subprocess.run([script, "repo", "--repo", "/nonexistent/never"], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("cnnserve repo: error: "), done.stderr


def test_summary_prints_the_notes_table() -> None:
    run = cli("summary", "vgg16")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "vgg_d: per-layer summary (one image, float32)"
    assert any(line.split()[:3] == ["input", "224x224x3", "150,528"] for line in lines)
    conv1 = next(line for line in lines if line.startswith("features.0 "))
    assert "224x224x64" in conv1 and "3,211,264" in conv1 and "1,792" in conv1
    assert "parameters         138,357,544" in run.stdout
    assert "weight layers      16" in run.stdout
    assert "bytes" in run.stdout


def test_summary_json_and_all_layers() -> None:
    run = cli("summary", "alexnet", "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["layers"][0]["volume"] == "55x55x96"
    assert data["totals"]["activation_bytes"] == 4 * data["totals"]["activations"]
    listed = len(data["layers"])
    everything = json.loads(cli("summary", "alexnet", "--json", "--all").stdout)["layers"]
    assert len(everything) > listed and any(layer["layer"] == "relu" for layer in everything)


def test_summary_with_a_builder_option() -> None:
    run = cli("summary", "alphago_policy", "--option", "k=256", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["layers"][0]["volume"] == "19x19x256"


def test_models_lists_every_architecture() -> None:
    run = cli("models", "--json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r["name"] for r in rows] == builders.names()
    resnet50 = next(r for r in rows if r["name"] == "resnet50")
    assert resnet50["input"] == "224x224x3" and resnet50["weight_layers"] == 50
    table = cli("models").stdout
    assert "resnet152" in table and "60.2M" in table and "11.5G" in table


def test_unknown_names_and_options_are_one_line_errors() -> None:
    run = cli("summary", "resnet51")
    assert run.returncode == 1
    assert run.stderr.startswith("cnnserve summary: error: unknown architecture 'resnet51'; valid names: lenet5,")
    assert len(run.stderr.strip().splitlines()) == 1
    run = cli("export", "alphago_policy", "--option", "filters=3", "--repo", "/nonexistent/never")
    assert run.returncode == 1
    assert "alphago_policy does not take option(s) filters; it takes: k" in run.stderr


def test_export_writes_a_loadable_entry_and_lists_the_repository(tmp_path: Path) -> None:
    run = cli("export", "cifar_resnet20", "lenet5", "--repo", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "[1/2] cifar_resnet20: exporting to ONNX" in run.stderr  # progress as it goes
    assert "[2/2] lenet5: training on scikit-learn's digits" in run.stderr
    assert "[2/2] lenet5: written to" in run.stderr
    assert "model repository" in run.stdout and "cifar_resnet20" in run.stdout
    session = ort.InferenceSession(
        str(tmp_path / "cifar_resnet20" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_inputs()[0].shape[0] == "batch"

    again = cli("export", "cifar_resnet20", "--if-missing", "--repo", str(tmp_path), "--json")
    assert again.returncode == 0, again.stderr
    assert "already in" in again.stderr
    listed = {e["name"]: e for e in json.loads(again.stdout)["models"]}
    assert sorted(listed) == ["cifar_resnet20", "lenet5"]
    # Which weights each entry has, in the listing as in its config.json.
    assert listed["lenet5"]["weights"] == "trained at export" and listed["cifar_resnet20"]["weights"] == "random"
    table = cli("repo", "--repo", str(tmp_path)).stdout
    assert "trained at export" in table and "random" in table

    (tmp_path / "lenet5" / "config.json").write_text("{")  # a broken entry is listed, not a crash
    listing = cli("repo", "--repo", str(tmp_path), "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert [e["name"] for e in data["models"]] == ["cifar_resnet20"]
    assert "not valid JSON" in data["broken"]["lenet5"]


def test_options_apply_to_every_name_and_are_checked_first(tmp_path: Path) -> None:
    run = cli("export", "alphago_policy", "cifar_resnet20", "--option", "k=16", "--repo", str(tmp_path))
    assert run.returncode == 1
    assert "cifar_resnet20 does not take option(s) k; it takes: num_classes" in run.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was exported


def test_random_weights_and_a_checkpoint_contradict(tmp_path: Path) -> None:
    run = cli("export", "lenet5", "--random-weights", "--checkpoint", "x.pt", "--repo", str(tmp_path))
    assert run.returncode == 1 and "--checkpoint and --random-weights contradict" in run.stderr


def test_export_into_an_unwritable_place(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    run = cli("export", "lenet5", "--repo", str(tmp_path / "file" / "repo"))
    assert run.returncode == 1
    assert "cnnserve export: error: cannot write to repository" in run.stderr


def test_export_with_another_max_batch_size(tmp_path: Path) -> None:
    # cifar_resnet20's defaults: max 256, preferred 1, 16, 64.
    for size, preferred in ((32, [1, 16, 32]), (512, [1, 16, 64, 512])):
        repo = tmp_path / str(size)
        run = cli("export", "cifar_resnet20", "--max-batch-size", str(size), "--repo", str(repo))
        assert run.returncode == 0, run.stderr
        config = load_entry(repo / "cifar_resnet20")
        assert (config.max_batch_size, list(config.preferred_batch_sizes)) == (size, preferred)
    refused = cli("export", "cifar_resnet20", "--max-batch-size", "0", "--repo", str(tmp_path / "0"))
    assert refused.returncode == 1
    assert refused.stderr == "cnnserve export: error: --max-batch-size must be 1 or more, got 0\n"
    assert not (tmp_path / "0").exists()


# -- cnnserve classify, against a running server ----------------------------------------------------


def test_classify_names_the_digit_and_prints_json(server: Served, small_repo: Path, tmp_path: Path) -> None:
    from PIL import Image

    from cnnserve.builders import digits

    split = digits.load_split()
    session = ort.InferenceSession(str(small_repo / "lenet5" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = digits.to_tensor(split.test_images[:20], 0.3057, 0.3235).numpy()
    predicted = session.run(None, {"input": x})[0].argmax(1)
    # Three held-out digits the exported network gets right in process.
    chosen = [i for i in range(20) if predicted[i] == split.test_labels[i]][:3]
    paths = []
    for i in chosen:
        paths.append(tmp_path / f"digit_{i}.png")
        Image.fromarray(split.test_images[i], mode="L").save(paths[-1])

    table = cli("classify", *map(str, paths), "--model", "lenet5", "--top", "3", "--server", server.grpc_address)
    assert table.returncode == 0, table.stderr
    for path, i in zip(paths, chosen, strict=True):
        block = table.stdout.split(f"{path}: lenet5 version 1\n")[1]
        first = block.splitlines()[2].split()  # header, rule, then rank 1
        assert first[:3] == ["1", str(split.test_labels[i]), str(split.test_labels[i])], block

    listing = cli("classify", str(paths[0]), "--model", "lenet5", "--json", "--server", server.grpc_address)
    assert listing.returncode == 0, listing.stderr
    (result,) = json.loads(listing.stdout)
    assert result["image"] == str(paths[0]) and result["trained"] is True
    assert result["classes"][0]["index"] == split.test_labels[chosen[0]]
    probabilities = [c["probability"] for c in result["classes"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)


def test_classify_errors_are_one_line(server: Served, tmp_path: Path) -> None:
    image = tmp_path / "noise.txt"
    image.write_text("not an image")
    cases = [
        (["classify", str(image), "--model", "lenet5", "--server", server.grpc_address],
         "INVALID_ARGUMENT: images[0]: not a PNG or JPEG image"),
        (["classify", str(tmp_path / "missing.png"), "--model", "lenet5", "--server", server.grpc_address],
         "cannot read"),
        (["classify", str(image), "--model", "lenet5", "--server", "127.0.0.1:1"],
         "cannot reach a server at 127.0.0.1:1"),
        (["classify", str(image), "--model", "nope", "--server", server.grpc_address], "NOT_FOUND: model_name"),
    ]  # fmt: skip
    for args, message in cases:
        done = cli(*args)
        assert done.returncode == 1, done
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- cnnserve policy and cnnserve gtp, against a running server -------------------------------------

SGF = Path(__file__).resolve().parents[1] / "data" / "gnugo-selfplay.sgf"


def test_policy_prints_the_board_with_the_top_moves_marked(server: Served) -> None:
    done = cli("policy", "--sgf", str(SGF), "--move", "30", "--top", "3", "--server", server.grpc_address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "alphago_policy version 1  (random weights: the moves mean nothing)"
    assert lines[1].startswith("black to move after 30 moves; ") and lines[1].endswith(" legal points")
    assert lines[2].split() == list("ABCDEFGHJKLMNOPQRST")
    board = lines[3:22]
    assert [row.split()[0] for row in board] == [str(n) for n in range(19, 0, -1)]
    table = lines[lines.index("mark  move  probability") + 2 :]
    assert [row.split()[0] for row in table] == ["1", "2", "3"]
    # Each listed move is marked on the board at its vertex.
    for row in table:
        mark, vertex = row.split()[:2]
        line = board[19 - int(vertex[1:])]
        assert line.split()[1 + "ABCDEFGHJKLMNOPQRST".index(vertex[0])] == mark

    as_json = cli("policy", "--sgf", str(SGF), "--move", "30", "--json", "--server", server.grpc_address)
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["to_move"] == "black" and result["move_number"] == 30 and result["trained"] is False
    assert len(result["probabilities"]) == 361 and abs(sum(result["probabilities"]) - 1) < 1e-4
    assert [m["vertex"] for m in result["top_moves"]][:3] == [row.split()[1] for row in table]


def test_policy_of_a_text_board(server: Served, tmp_path: Path) -> None:
    board = tmp_path / "board.txt"
    board.write_text("\n".join(["X" + "." * 18, "O" + "." * 18] + ["." * 19] * 17) + "\n")
    done = cli("policy", "--board", str(board), "--to-move", "white", "--json", "--server", server.grpc_address)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["to_move"] == "white" and result["legal_moves"] == 359 and result["move_number"] == 0


def test_policy_errors_are_one_line(server: Served, tmp_path: Path) -> None:
    board = tmp_path / "short.txt"
    board.write_text("...\n")
    at = ["--server", server.grpc_address]
    cases = [
        (["--sgf", str(SGF), "--move", "500", *at], "INVALID_ARGUMENT: move_number: 500, but the record has 120"),
        (["--board", str(board), "--to-move", "b", *at], "INVALID_ARGUMENT: board: 1 lines; expected 19 lines"),
        (["--board", str(board), *at], "--board needs --to-move black or white"),
        (["--board", str(board), "--to-move", "purple", *at], "--to-move: 'purple' is not a colour"),
        (["--sgf", str(SGF), "--board", str(board), *at], "give exactly one of --sgf FILE and --board FILE"),
        ([*at], "give exactly one of --sgf FILE and --board FILE"),
        (["--sgf", str(tmp_path / "missing.sgf"), *at], "cannot read"),
        (["--sgf", str(SGF), "--model", "lenet5", *at], "INVALID_ARGUMENT: model_name: model 'lenet5' is a "),
        (["--sgf", str(SGF), "--server", "127.0.0.1:1"], "cannot reach a server at 127.0.0.1:1"),
    ]
    for args, message in cases:
        done = cli("policy", *args)
        assert done.returncode == 1, done
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_gtp_stops_at_once_when_the_server_cannot_answer(server: Served) -> None:
    for args, message in [
        (["--server", "127.0.0.1:1"], "cannot reach a server at 127.0.0.1:1"),
        (["--server", server.grpc_address, "--model", "lenet5"], "INVALID_ARGUMENT: model_name: model 'lenet5'"),
    ]:
        done = cli("gtp", *args)
        assert done.returncode == 1, done
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(server: Served) -> None:
    """`cnnserve policy ... | head -1`: no traceback when head closes the pipe."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnserve", "policy", "--sgf", str(SGF), "--top", "9", "--server",
         server.grpc_address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the command writes a line
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and stderr == "", stderr


def without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``cnnserve ARGS`` in a process where ``module`` cannot be imported, as in an install that
    lacks the extra providing it (None in sys.modules makes every import of it fail)."""
    code = f"import sys; sys.modules[{module!r}] = None; from cnnserve.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_a_serving_install_names_the_extra_a_command_needs() -> None:
    for command in ("models", "summary", "export"):
        done = without("torch", command, "lenet5") if command != "models" else without("torch", command)
        assert done.returncode == 1, done.stderr
        assert done.stderr == (
            f"cnnserve {command}: error: it needs torch, which is not installed: pip install 'cnnserve[export]'\n"
        )
    done = without("matplotlib", "compare", "--models", "lenet5")
    assert done.returncode == 1
    assert "pip install 'cnnserve[compare]'" in done.stderr and "Traceback" not in done.stderr
    # What a serving install does have still works without them.
    done = without(
        "torch", "serve", "--repo", "/nonexistent", "--grpc-port", "0", "--metrics-port", "-1", "--http-port", "-1"
    )
    assert done.returncode == 1 and "model repository /nonexistent does not exist" in done.stderr
