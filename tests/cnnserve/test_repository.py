"""Reading the model repository: a real exported entry, and every way an entry can be broken."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cnnserve.repository import ModelConfig, RepositoryError, TensorSpec, load_entry, parse_config, scan

Edit = Callable[[dict[str, Any]], None]


def copy_entry(exported_repo: Path, repo: Path, name: str = "alphago_policy", edit: Edit | None = None) -> Path:
    """Copy an exported entry into ``repo``; ``edit`` may change its config.json in place."""
    entry = Path(shutil.copytree(exported_repo / name, repo / name))
    if edit is not None:
        config = json.loads((entry / "config.json").read_text())
        edit(config)
        (entry / "config.json").write_text(json.dumps(config))
    return entry


def test_exported_classifier_is_read_in_full(exported_repo: Path) -> None:
    entry = exported_repo / "cifar_resnet20"
    raw = json.loads((entry / "config.json").read_text())
    config = load_entry(entry)
    assert config.name == config.architecture == "cifar_resnet20"
    assert config.family == raw["family"] and config.task == "classification"
    assert config.version == 1 and config.onnx_path == entry / "1" / "model.onnx"
    assert config.inputs == (TensorSpec("input", "FP32", (3, 32, 32), "NCHW"),)
    assert config.outputs == (TensorSpec("logits", "FP32", (10,)),)
    assert config.labels[:3] == ("airplane", "automobile", "bird") and len(config.labels) == 10
    assert config.max_batch_size == raw["max_batch_size"]
    assert config.max_queue_delay_us == raw["dynamic_batching"]["max_queue_delay_us"]
    assert config.preferred_batch_sizes == tuple(raw["dynamic_batching"]["preferred_batch_sizes"])
    assert config.preprocessing == raw["preprocessing"] and config.preprocessing is not None
    assert config.weight_layers == 20
    assert (config.parameters, config.macs) == (raw["facts"]["parameters"], raw["facts"]["macs"])
    assert config.trained is False and config.weights_source.startswith("random")
    assert config.raw == raw


def test_exported_policy_net_has_no_labels_or_preprocessing(exported_repo: Path) -> None:
    config = load_entry(exported_repo / "alphago_policy")
    assert config.task == "policy" and config.labels == () and config.preprocessing is None
    assert config.inputs[0].shape == (48, 19, 19) and config.outputs[0].shape == (361,)
    assert config.raw["options"] == {"k": 16}


def test_scan_reads_every_entry(exported_repo: Path) -> None:
    good, bad = scan(exported_repo)
    assert [c.name for c in good] == ["alphago_policy", "cifar_resnet20"] and bad == {}


def _delete(*path: str | int) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        *parents, last = path
        target: Any = config
        for key in parents:
            target = target[key]
        del target[last]

    return edit


def _set(value: Any, *path: str | int) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        *parents, last = path
        target: Any = config
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_delete("name"), "missing field 'name'"),
        (_delete("architecture"), "missing field 'architecture'"),
        (_delete("input"), "missing field 'input'"),
        (_delete("output"), "missing field 'output'"),
        (_delete("max_batch_size"), "missing field 'max_batch_size'"),
        (_delete("facts"), "missing field 'facts'"),
        (_delete("facts", "macs"), "missing field 'facts.macs'"),
        (_delete("weights", "trained"), "missing field 'weights.trained'"),
        (_delete("input", 0, "datatype"), "missing field 'input[0].datatype'"),
        (_delete("output", 0, "shape"), "missing field 'output[0].shape'"),
        (_set([], "input"), "field 'input' is empty"),
        (_set("8", "max_batch_size"), "field 'max_batch_size' must be an integer, got '8'"),
        (_set(True, "max_batch_size"), "field 'max_batch_size' must be an integer, got True"),
        (_set(0, "max_batch_size"), "field 'max_batch_size' must be at least 1"),
        (_set("float32", "input", 0, "datatype"), "field 'input[0].datatype' is 'float32', not a V2 datatype"),
        (_set([48, 0, 19], "input", 0, "shape"), "field 'input[0].shape' must be positive integers"),
        (_set("planes", "input", 0), "field 'input[0]' must be an object"),
        (_set(-1, "dynamic_batching", "max_queue_delay_us"), "'dynamic_batching.max_queue_delay_us' must be"),
        (_set([1, "16"], "dynamic_batching", "preferred_batch_sizes"), "'dynamic_batching.preferred_batch_sizes'"),
        (_set("yes", "weights", "trained"), "field 'weights.trained' must be true or false"),
        (_set("imagenet", "preprocessing"), "field 'preprocessing' must be an object or null"),
        (_set("go", "name"), "field 'name' is 'go', but the folder is 'alphago_policy'"),
        (_set({"count": 2}, "instance_group"), "field 'instance_group' must be a list of one group"),
        (_set([{"count": 1}, {"count": 1}], "instance_group"), "field 'instance_group' must be a list of one group"),
        (_set([{"count": 0}], "instance_group"), "field 'instance_group[0].count' must be an integer >= 1, got 0"),
        (_set([{"count": 2, "kind": "KIND_GPU"}], "instance_group"),
         "field 'instance_group[0].kind' must be KIND_AUTO (--device chooses where models run), got 'KIND_GPU'"),
        (_set([{"count": 2, "gpus": [0]}], "instance_group"), "field 'instance_group[0]' has unknown keys ['gpus']"),
    ],
)  # fmt: skip
def test_bad_config_names_the_file_and_field(exported_repo: Path, tmp_path: Path, edit: Edit, message: str) -> None:
    entry = copy_entry(exported_repo, tmp_path, edit=edit)
    with pytest.raises(RepositoryError) as info:
        load_entry(entry)
    assert message in str(info.value)
    assert str(entry / "config.json") in str(info.value)


def test_missing_config_json(exported_repo: Path, tmp_path: Path) -> None:
    entry = copy_entry(exported_repo, tmp_path)
    (entry / "config.json").unlink()
    with pytest.raises(RepositoryError, match=r"alphago_policy/config\.json: missing"):
        load_entry(entry)


@pytest.mark.parametrize(
    ("text", "message"), [("{ not json", "not valid JSON"), ("[1, 2]", "expected a JSON object, got list")]
)
def test_config_that_is_not_a_json_object(exported_repo: Path, tmp_path: Path, text: str, message: str) -> None:
    entry = copy_entry(exported_repo, tmp_path)
    (entry / "config.json").write_text(text)
    with pytest.raises(RepositoryError, match=rf"alphago_policy/config\.json: {message}"):
        load_entry(entry)


def test_no_version_folder(exported_repo: Path, tmp_path: Path) -> None:
    entry = copy_entry(exported_repo, tmp_path)
    shutil.rmtree(entry / "1")
    (entry / "latest").mkdir()  # not a version: only numeric folder names count
    with pytest.raises(RepositoryError, match=r"alphago_policy: no version folder \(expected .*/1/model\.onnx\)"):
        load_entry(entry)


def test_highest_version_without_model_onnx_is_refused(exported_repo: Path, tmp_path: Path) -> None:
    entry = copy_entry(exported_repo, tmp_path)
    (entry / "2").mkdir()
    with pytest.raises(RepositoryError, match=r"2/model\.onnx: missing \(version 2 is the highest version folder\)"):
        load_entry(entry)


def test_highest_numeric_version_is_served(exported_repo: Path, tmp_path: Path) -> None:
    entry = copy_entry(exported_repo, tmp_path)
    for version in ("3", "10", "9"):
        shutil.copytree(entry / "1", entry / version)
    (entry / "v99").mkdir()
    config = load_entry(entry)
    assert config.version == 10 and config.onnx_path == entry / "10" / "model.onnx"

    shutil.rmtree(entry / "10")
    shutil.rmtree(entry / "9")
    assert load_entry(entry).version == 3  # 1 and 3 present


def test_labels_must_match_the_output_size(exported_repo: Path, tmp_path: Path) -> None:
    entry = copy_entry(exported_repo, tmp_path, "cifar_resnet20")
    labels = entry / "labels.txt"
    labels.write_text(labels.read_text() + "\n\n")  # trailing blank lines are not classes
    assert len(load_entry(entry).labels) == 10

    labels.write_text("cat\ndog\n")
    with pytest.raises(RepositoryError) as info:
        load_entry(entry)
    assert str(labels) in str(info.value)
    assert "2 labels, but output 'logits' (field 'output[0].shape' of config.json) has 10 classes" in str(info.value)

    labels.unlink()
    with pytest.raises(RepositoryError, match=r"labels\.txt: missing \(named by field 'output\[0\]\.labels'"):
        load_entry(entry)


def test_labels_file_must_be_inside_the_entry(exported_repo: Path, tmp_path: Path) -> None:
    entry = copy_entry(exported_repo, tmp_path, "cifar_resnet20", edit=_set("../x.txt", "output", 0, "labels"))
    with pytest.raises(RepositoryError, match=r"field 'output\[0\]\.labels' must name a file inside"):
        load_entry(entry)


def test_broken_entries_do_not_hide_good_ones(exported_repo: Path, tmp_path: Path) -> None:
    copy_entry(exported_repo, tmp_path, "cifar_resnet20")
    copy_entry(exported_repo, tmp_path, "alphago_policy", edit=_delete("output"))
    (tmp_path / "empty").mkdir()
    (tmp_path / ".cifar_resnet20.x1y2").mkdir()  # the exporter's staging folder: not an entry
    shutil.copytree(exported_repo / "cifar_resnet20", tmp_path / ".cifar_resnet20.old.42")
    (tmp_path / "README.md").write_text("generated\n")

    good, bad = scan(tmp_path)
    assert [c.name for c in good] == ["cifar_resnet20"]
    assert sorted(bad) == ["alphago_policy", "empty"]
    assert bad["alphago_policy"] == f"{tmp_path / 'alphago_policy' / 'config.json'}: missing field 'output'"
    assert bad["empty"].startswith(f"{tmp_path / 'empty' / 'config.json'}: missing")


def test_instance_group_is_read_and_written(exported_repo: Path, tmp_path: Path) -> None:
    assert load_entry(exported_repo / "alphago_policy").instance_count is None  # export writes none
    entry = copy_entry(exported_repo, tmp_path, edit=_set([{"count": 3, "kind": "KIND_AUTO"}], "instance_group"))
    assert load_entry(entry).instance_count == 3
    written = parse_config(json.loads((entry / "config.json").read_text()), entry / "config.json")
    assert written.instance_count == 3 and written.to_json()["instance_group"] == [{"count": 3, "kind": "KIND_AUTO"}]


def test_missing_repository_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=r"model repository .*nowhere does not exist"):
        scan(tmp_path / "nowhere")


def test_overrides_replace_batching_and_clamp_preferred_sizes(exported_repo: Path) -> None:
    entry = exported_repo / "alphago_policy"
    assert load_entry(entry).preferred_batch_sizes == (1, 16, 64)

    config = load_entry(entry, {"max_batch_size": 8, "max_queue_delay_us": 250, "preferred_batch_sizes": None})
    assert (config.max_batch_size, config.max_queue_delay_us, config.preferred_batch_sizes) == (8, 250, (1, 8))

    config = load_entry(entry, {"preferred_batch_sizes": [32, 4, 1000, 4]})
    assert config.preferred_batch_sizes == (4, 32, config.max_batch_size)
    assert config.raw["max_batch_size"] == config.max_batch_size  # raw stays as read

    good, _ = scan(exported_repo, {"max_batch_size": 2})
    assert {c.name: (c.max_batch_size, c.preferred_batch_sizes) for c in good} == {
        "alphago_policy": (2, (1, 2)),
        "cifar_resnet20": (2, (1, 2)),
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_batch": 8}, r"unknown batching override\(s\) \['max_batch'\]"),
        ({"max_batch_size": 0}, "max_batch_size override must be an integer >= 1, got 0"),
        ({"max_queue_delay_us": -5}, "max_queue_delay_us override must be an integer >= 0, got -5"),
        ({"preferred_batch_sizes": [0, 4]}, "preferred_batch_sizes override must be integers >= 1"),
    ],
)
def test_bad_overrides_are_refused_once_for_all_entries(
    exported_repo: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        scan(exported_repo, overrides)


def test_config_is_immutable(exported_repo: Path) -> None:
    config: ModelConfig = load_entry(exported_repo / "alphago_policy")
    with pytest.raises(AttributeError):
        config.max_batch_size = 1  # type: ignore[misc]


# -- files that leave the repository ---------------------------------------------------------


@pytest.fixture()
def repo_and_outside(tmp_path: Path) -> tuple[Path, Path]:
    """An empty repository folder and, beside it, a folder the server must not read from."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "repo", tmp_path / "outside"


def test_a_model_symlinked_outside_the_repository_is_refused(
    exported_repo: Path, repo_and_outside: tuple[Path, Path]
) -> None:
    repo, outside = repo_and_outside
    entry = copy_entry(exported_repo, repo)
    model = entry / "1" / "model.onnx"
    secret = Path(shutil.move(model, outside / "model.onnx"))
    model.symlink_to(secret)
    with pytest.raises(RepositoryError) as info:
        load_entry(entry)
    assert str(info.value) == f"{model}: a symlink to {secret.resolve()}, outside the repository {repo}"
    good, bad = scan(repo)
    assert good == [] and bad == {"alphago_policy": str(info.value)}


def test_labels_symlinked_outside_the_repository_are_refused(
    exported_repo: Path, repo_and_outside: tuple[Path, Path]
) -> None:
    repo, outside = repo_and_outside
    entry = copy_entry(exported_repo, repo, "cifar_resnet20")
    labels = entry / "labels.txt"
    secret = Path(shutil.move(labels, outside / "labels.txt"))
    labels.symlink_to(os.path.relpath(secret, entry))  # relative: the message gives where it resolves
    with pytest.raises(RepositoryError) as info:
        load_entry(entry)
    assert str(info.value) == f"{labels}: a symlink to {secret.resolve()}, outside the repository {repo}"


def test_config_symlinked_outside_the_repository_is_refused(
    exported_repo: Path, repo_and_outside: tuple[Path, Path]
) -> None:
    repo, outside = repo_and_outside
    entry = copy_entry(exported_repo, repo)
    config = entry / "config.json"
    secret = Path(shutil.move(config, outside / "config.json"))
    config.symlink_to(secret)
    with pytest.raises(RepositoryError, match=rf"^{re.escape(str(config))}: a symlink to .*, outside the repository"):
        load_entry(entry)


def test_an_entry_folder_symlinked_outside_the_repository_is_refused(
    exported_repo: Path, repo_and_outside: tuple[Path, Path]
) -> None:
    repo, outside = repo_and_outside
    real = copy_entry(exported_repo, outside)
    (repo / "alphago_policy").symlink_to(real, target_is_directory=True)
    copy_entry(exported_repo, repo, "cifar_resnet20")
    good, bad = scan(repo)
    assert [c.name for c in good] == ["cifar_resnet20"]
    assert bad == {
        "alphago_policy": f"{repo / 'alphago_policy'}: a symlink to {real.resolve()}, outside the repository {repo}"
    }


def test_a_version_folder_symlinked_outside_the_repository_is_refused(
    exported_repo: Path, repo_and_outside: tuple[Path, Path]
) -> None:
    repo, outside = repo_and_outside
    entry = copy_entry(exported_repo, repo)
    shutil.copytree(entry / "1", outside / "2")
    (entry / "2").symlink_to(outside / "2", target_is_directory=True)
    with pytest.raises(
        RepositoryError, match=rf"^{re.escape(str(entry / '2'))}: a symlink to .*, outside the repository"
    ):
        load_entry(entry)


def test_a_single_entry_repository_is_its_own_boundary(exported_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path
    single = Path(shutil.copytree(exported_repo / "cifar_resnet20", repo / "mnt"))
    labels = single / "labels.txt"
    shutil.move(labels, repo / "labels.txt")  # beside /mnt/models, not in it
    labels.symlink_to(repo / "labels.txt")
    good, bad = scan(single)
    assert good == [] and bad == {"cifar_resnet20": f"{labels}: a symlink to {(repo / 'labels.txt').resolve()}, "
                                                     f"outside the repository {single}"}  # fmt: skip


def test_symlinks_inside_the_repository_are_allowed(exported_repo: Path, tmp_path: Path) -> None:
    entry = copy_entry(exported_repo, tmp_path, "cifar_resnet20")
    (entry / "2").symlink_to("1", target_is_directory=True)  # a new version that is the old one's files
    other = copy_entry(exported_repo, tmp_path, "alphago_policy")
    shutil.move(entry / "labels.txt", tmp_path / "shared-labels.txt")  # in the repository, a file not an entry
    (entry / "labels.txt").symlink_to("../shared-labels.txt")
    (other / "1" / "model.onnx").unlink()
    (other / "1" / "model.onnx").symlink_to("../../cifar_resnet20/1/model.onnx")  # another entry's file
    config = load_entry(entry)
    assert config.version == 2 and config.onnx_path == entry / "2" / "model.onnx" and len(config.labels) == 10
    assert load_entry(other).onnx_path == other / "1" / "model.onnx"


def _externalise(model_path: Path, location: str = "weights.bin") -> None:
    """Save ``model_path`` again with its initializers over 1 KiB (onnx's default) in the external
    file ``location``."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(model_path))
    onnx.save_model(model, str(model_path), save_as_external_data=True, location=location)


def _relocate(model_path: Path, location: str) -> None:
    """Point every external tensor of ``model_path`` at ``location``, as an edited file might."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(model_path), load_external_data=False)
    for tensor in model.graph.initializer:
        for item in tensor.external_data:
            if item.key == "location":
                item.value = location
    onnx.save_model(model, str(model_path))


def test_external_data_inside_the_model_folder_is_allowed(exported_repo: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from cnnserve.onnx_external import external_data

    entry = copy_entry(exported_repo, tmp_path)
    model = entry / "1" / "model.onnx"
    assert external_data(model) == []
    _externalise(model)
    found = external_data(model)
    assert found and {location for _, location in found} == {"weights.bin"}
    assert load_entry(entry).onnx_path == model
    ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # and it is a model that loads


@pytest.mark.parametrize("where", ["../../secret.bin", "absolute", "symlink"])
def test_external_data_outside_the_model_folder_is_refused(exported_repo: Path, tmp_path: Path, where: str) -> None:
    repo = tmp_path / "repo"
    entry = copy_entry(exported_repo, repo)
    model = entry / "1" / "model.onnx"
    _externalise(model)
    secret = Path(shutil.move(entry / "1" / "weights.bin", tmp_path / "secret.bin"))
    location = {"../../secret.bin": "../../../secret.bin", "absolute": str(secret), "symlink": "weights.bin"}[where]
    if where == "symlink":
        (entry / "1" / "weights.bin").symlink_to(secret)
    else:
        _relocate(model, location)
    with pytest.raises(RepositoryError) as info:
        load_entry(entry)
    message = str(info.value)
    assert message.startswith(f"{model}: tensor ") and f"names external data {location!r}" in message
    if where == "absolute":
        assert message.endswith(f"an absolute path; external data must lie in the model's folder {model.parent}")
    else:
        assert message.endswith(f"which resolves to {secret.resolve()}, outside the model's folder {model.parent}")
