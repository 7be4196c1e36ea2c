"""A real server over a repository with entries whose files leave it: a model symlinked outside
the repository, and a model whose external data lies outside its folder. Both are refused with
their reason; the other model serves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from harness import serving, triton_input


def test_entries_reading_outside_the_repository_are_refused_and_the_others_serve(
    small_repo: Path, tmp_path: Path
) -> None:
    onnx = pytest.importorskip("onnx")
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    outside.mkdir()
    for name in ("lenet5", "cifar_resnet20", "alphago_policy"):
        shutil.copytree(small_repo / name, repo / name)

    leaky = repo / "cifar_resnet20" / "1" / "model.onnx"  # a symlink to a file outside
    secret = Path(shutil.move(leaky, outside / "model.onnx"))
    leaky.symlink_to(secret)

    spilled = repo / "alphago_policy" / "1" / "model.onnx"  # external data outside its folder
    model = onnx.load(str(spilled))
    onnx.save_model(model, str(spilled), save_as_external_data=True, location="weights.bin")
    shutil.move(spilled.parent / "weights.bin", outside / "weights.bin")
    model = onnx.load(str(spilled), load_external_data=False)
    for tensor in model.graph.initializer:
        for item in tensor.external_data:
            if item.key == "location":
                item.value = "../../../outside/weights.bin"
    onnx.save_model(model, str(spilled))

    with serving(repo) as proc, tc.InferenceServerClient(proc.grpc_address) as client:
        index = {m.name: m for m in client.get_model_repository_index().models}
        assert {n: m.state for n, m in index.items()} == {
            "alphago_policy": "UNAVAILABLE", "cifar_resnet20": "UNAVAILABLE", "lenet5": "READY",
        }  # fmt: skip
        assert index["cifar_resnet20"].reason == (
            f"{leaky}: a symlink to {secret.resolve()}, outside the repository {repo}"
        )
        assert index["alphago_policy"].reason.startswith(f"{spilled}: tensor ")
        assert "names external data '../../../outside/weights.bin', which resolves to" in index["alphago_policy"].reason
        assert index["alphago_policy"].reason.endswith(f"outside the model's folder {spilled.parent}")
        assert client.is_model_ready("lenet5")
        assert not client.is_model_ready("cifar_resnet20") and not client.is_model_ready("alphago_policy")
        result = client.infer("lenet5", [triton_input("input", np.zeros((2, 1, 32, 32), np.float32))])
        assert result.as_numpy(result.get_response().outputs[0].name).shape[0] == 2
