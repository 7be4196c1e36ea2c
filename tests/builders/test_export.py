"""ONNX export: every architecture, the repository entry it writes, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cnnserve import builders
from cnnserve.builders import export as export_module
from cnnserve.builders.export import ExportError, check_parity, export
from cnnserve.builders.weights import CheckpointError


def _run(entry: Path, name: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(entry / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {builders.get(name).input_name: x})[0]


def _leftovers(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.iterdir())


# One architecture is exported under an alias, as `cnnserve export VGG11` would: the entry is named
# as written, and its architecture is the canonical name.
ALIASED = {"vgg_a": "VGG11"}


@pytest.mark.slow
@pytest.mark.parametrize("name", builders.names())
def test_every_architecture_exports_with_parity(name: str, tmp_path: Path) -> None:
    """Each network builds, runs (PyTorch in float64 and float32, and ONNX Runtime: the parity
    check) and exports; once per run, the only forward pass of it the suite makes."""
    written = ALIASED.get(name, name).lower()
    result = export(ALIASED.get(name, name), tmp_path)
    entry = tmp_path / written
    assert _leftovers(tmp_path) == [written]  # nothing staged is left behind
    config = json.loads((entry / "config.json").read_text())
    spec = builders.get(name)

    # The graph: symbolic batch axis on input and output, names from the registry.
    graph = onnx.load(str(entry / "1" / "model.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == [spec.input_name]
    assert [o.name for o in graph.output] == [spec.output_name]
    for value in (graph.input[0], graph.output[0]):
        assert value.type.tensor_type.shape.dim[0].dim_param

    # The parity check ran and what it measured is recorded.
    parity = config["export"]["parity"]
    assert parity["batch_sizes"] == [1, 3]
    # ONNX Runtime is as close to the float64 truth as PyTorch's own float32 run.
    assert parity["max_abs_error"] <= 4 * parity["torch_float32_max_abs_error"] + 1e-4

    # It runs at a batch size the parity check did not use, with the right output shape.
    out = _run(entry, name, np.random.default_rng(0).standard_normal((5, *spec.input_shape), dtype=np.float32))
    assert out.shape == (5, spec.num_classes) and np.isfinite(out).all()
    if spec.task == "policy":  # the softmax is part of the network
        np.testing.assert_allclose(out.sum(1), np.ones(5), rtol=1e-5)

    # config.json: the fields the repository format promises.
    assert (config["name"], config["architecture"]) == (written, name)
    assert config["input"] == [
        {"name": spec.input_name, "datatype": "FP32", "shape": list(spec.input_shape), "layout": "NCHW"}
    ]
    assert config["output"][0]["name"] == spec.output_name and config["output"][0]["shape"] == [spec.num_classes]
    assert config["max_batch_size"] >= max(config["dynamic_batching"]["preferred_batch_sizes"])
    assert config["dynamic_batching"]["max_queue_delay_us"] >= 0
    assert set(config["facts"]) >= {"weight_layers", "parameters", "macs"}
    assert config["facts"]["parameters"] == result.config["facts"]["parameters"] > 0
    assert isinstance(config["weights"]["trained"], bool) and config["weights"]["source"]
    if spec.task == "classification":
        labels = (entry / "labels.txt").read_text().splitlines()
        assert len(labels) == spec.num_classes
        assert config["preprocessing"]["crop"] == spec.input_shape[-1]
        assert len(config["preprocessing"]["mean"]) == spec.input_shape[0]
    else:
        assert not (entry / "labels.txt").exists() and config["preprocessing"] is None


def test_lenet5_is_trained_on_digits_to_97_percent(small_repo: Path) -> None:
    # The session's lenet5 (tests/conftest.py), exported by the same function: trained once a run.
    config = json.loads((small_repo / "lenet5" / "config.json").read_text())
    weights = config["weights"]
    assert weights["trained"] is True
    assert weights["held_out_accuracy"] >= 0.97
    assert weights["held_out_examples"] == 360

    # Re-measure the held-out accuracy through ONNX Runtime, not through the exporter's word.
    from cnnserve.builders import digits

    split = digits.load_split()
    mean, std = config["preprocessing"]["mean"][0], config["preprocessing"]["std"][0]
    x = digits.to_tensor(split.test_images, mean, std).numpy()
    logits = _run(small_repo / "lenet5", "lenet5", x)
    accuracy = float((logits.argmax(1) == split.test_labels).mean())
    assert accuracy == pytest.approx(weights["held_out_accuracy"], abs=1e-4)
    assert (small_repo / "lenet5" / "labels.txt").read_text().split() == [str(d) for d in range(10)]


def test_imagenet_models_get_the_1000_class_names(tmp_path: Path) -> None:
    export("cifar_resnet20", tmp_path)
    assert (tmp_path / "cifar_resnet20" / "labels.txt").read_text().split()[:2] == ["airplane", "automobile"]
    names = builders.labels.imagenet()
    assert len(names) == 1000 and len(set(names)) >= 998  # two ImageNet names repeat ("crane", "maillot")
    assert names[0] == "tench" and names[999] == "toilet tissue"


def test_random_resnets_keep_a_sane_scale(tmp_path: Path) -> None:
    """Batch-norm calibration keeps a random 56-layer net's logits far from overflow."""
    export("cifar_resnet56", tmp_path)
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32), dtype=np.float32)
    out = _run(tmp_path / "cifar_resnet56", "cifar_resnet56", x)
    assert np.abs(out).max() < 1e3
    config = json.loads((tmp_path / "cifar_resnet56" / "config.json").read_text())
    assert config["weights"] == {
        "trained": False,
        "kind": "random",
        "source": "random (seed 0), batch-norm statistics calibrated on Gaussian noise",
    }


def test_builder_option_and_entry_name(tmp_path: Path) -> None:
    export("alphago_policy", tmp_path, options={"k": 8}, entry_name="alphago_k8")
    config = json.loads((tmp_path / "alphago_k8" / "config.json").read_text())
    assert config["name"] == "alphago_k8" and config["architecture"] == "alphago_policy"
    assert config["options"] == {"k": 8}
    x = np.zeros((2, 48, 19, 19), dtype=np.float32)
    probabilities = _run(tmp_path / "alphago_k8", "alphago_policy", x)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


def test_fp16_export_keeps_a_float32_interface(tmp_path: Path) -> None:
    config = export("cifar_resnet20", tmp_path, fp16=True).config
    assert config["export"]["precision"] == "fp16"
    assert config["export"]["parity"]["relative_rms_error"] < 5e-2
    assert config["input"][0]["datatype"] == "FP32"
    graph = onnx.load(str(tmp_path / "cifar_resnet20" / "1" / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)


def test_uint8_export_equals_float32_preprocessed_outside(tmp_path: Path, exported_repo: Path) -> None:
    config = export("cifar_resnet20", tmp_path, uint8_input=True, fp16=False).config
    assert config["input"][0] == {"name": "input", "datatype": "UINT8", "shape": [32, 32, 3], "layout": "NHWC"}
    assert config["preprocessing"]["in_graph"] == ["scale", "mean", "std"]
    graph = onnx.load(str(tmp_path / "cifar_resnet20" / "1" / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    pixels = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    pre = config["preprocessing"]
    outside = ((pixels * pre["scale"] - np.array(pre["mean"])) / np.array(pre["std"])).transpose(0, 3, 1, 2)
    # Same seed, same weights: the float32 entry of the shared repository is the same network.
    expected = _run(exported_repo / "cifar_resnet20", "cifar_resnet20", outside.astype(np.float32))
    np.testing.assert_allclose(_run(tmp_path / "cifar_resnet20", "cifar_resnet20", pixels), expected,
                               rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))  # fmt: skip


def test_uint8_input_needs_an_image_model(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="alphago_policy does not take images"):
        export("alphago_policy", tmp_path, uint8_input=True)
    assert _leftovers(tmp_path) == []


def test_parity_check_refuses_a_graph_that_disagrees(tmp_path: Path) -> None:
    export("cifar_resnet20", tmp_path)
    other = builders.build("cifar_resnet20")  # different random weights than the exported ones
    with pytest.raises(
        ExportError,
        match=r"cifar_resnet20: ONNX Runtime disagrees with PyTorch at batch 1: max abs error .* allowed \(PyTorch",
    ):
        check_parity(other, builders.get("cifar_resnet20"), tmp_path / "cifar_resnet20" / "1" / "model.onnx")


def test_refused_export_writes_nothing_and_keeps_the_old_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export("cifar_resnet20", tmp_path)
    before = (tmp_path / "cifar_resnet20" / "1" / "model.onnx").read_bytes()

    def disagree(*_args: object, **_kwargs: object) -> dict[str, float]:
        raise ExportError("cifar_resnet20: ONNX Runtime disagrees with PyTorch at batch 1: max abs error 1 > 0.001")

    monkeypatch.setattr(export_module, "check_parity", disagree)
    with pytest.raises(ExportError, match="disagrees"):
        export("cifar_resnet20", tmp_path, seed=7)
    assert _leftovers(tmp_path) == ["cifar_resnet20"]
    assert (tmp_path / "cifar_resnet20" / "1" / "model.onnx").read_bytes() == before


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = builders.build("cifar_resnet20")
    checkpoint = tmp_path / "mine.pt"
    torch.save({"state_dict": net.state_dict()}, checkpoint)
    config = export("cifar_resnet20", tmp_path / "repo", checkpoint=checkpoint).config
    assert config["weights"]["trained"] is True and config["weights"]["source"] == "checkpoint mine.pt"
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(tmp_path / "repo" / "cifar_resnet20", "cifar_resnet20", x), expected, atol=1e-4)


def test_checkpoint_that_does_not_fit_names_every_mismatch(tmp_path: Path) -> None:
    state = builders.build("cifar_resnet20").state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    state["fc.weight"] = torch.zeros(7, 64)
    checkpoint = tmp_path / "bad.pt"
    torch.save(state, checkpoint)
    repo = tmp_path / "repo"
    with pytest.raises(CheckpointError) as info:
        export("cifar_resnet20", repo, checkpoint=checkpoint)
    message = str(info.value)
    assert "missing keys: fc.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "mismatched keys: fc.weight (checkpoint (7, 64), network (10, 64))" in message
    assert _leftovers(repo) == []


def test_checkpoint_that_is_not_a_state_dict(tmp_path: Path) -> None:
    checkpoint = tmp_path / "junk.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read with weights_only=True"):
        export("lenet5", tmp_path / "repo", checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match="does not exist"):
        export("lenet5", tmp_path / "repo", checkpoint=tmp_path / "missing.pt")


def test_unwritable_repository_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ExportError, match=r"cannot write to repository .*file/repo"):
        export("lenet5", blocker / "repo")
