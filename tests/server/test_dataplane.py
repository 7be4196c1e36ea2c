"""One pass through the data plane: a request looks its model up once, whatever its protocol,
and carries what it found through checking, batching and encoding. The server runs in this
process, so its model manager can be watched; the clients are the stock ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.http as th
from harness import ort_run, triton_input
from imagefiles import encode, random_rgb
from inprocess import InProcessServer, in_process

from cnnserve.generated.cnnserve.v1 import service_pb2 as v1
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as v1_grpc
from cnnserve.server.model_manager import ServedModel


class CountingModels(dict[str, ServedModel]):
    """The model manager's table of served models, counting every lookup by name."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> ServedModel:
        self.lookups += 1
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


@pytest.fixture(scope="module")
def served(small_repo: Path) -> Iterator[InProcessServer]:
    with in_process(small_repo, models=("lenet5", "alphago_policy")) as server:
        yield server


@pytest.fixture
def models(served: InProcessServer) -> Iterator[CountingModels]:
    manager = served.server.models
    original = manager.models
    manager.models = counting = CountingModels(original)
    try:
        yield counting
    finally:
        manager.models = original


def lenet5_input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 1, 32, 32), dtype=np.float32)


def test_a_grpc_model_infer_looks_its_model_up_once(
    served: InProcessServer, models: CountingModels, small_repo: Path
) -> None:
    x = lenet5_input(0)
    with tc.InferenceServerClient(served.grpc_address) as client:
        got = client.infer("lenet5", [triton_input("input", x)]).as_numpy("logits")
    np.testing.assert_allclose(got, ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)
    assert models.lookups == 1


@pytest.mark.parametrize("binary", [True, False])
def test_a_rest_infer_looks_its_model_up_once(
    served: InProcessServer, models: CountingModels, small_repo: Path, binary: bool
) -> None:
    x = lenet5_input(1)
    client = th.InferenceServerClient(served.http_address)
    try:
        tensor = th.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        got = client.infer("lenet5", [tensor]).as_numpy("logits")
    finally:
        client.close()
    np.testing.assert_allclose(got, ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)
    assert models.lookups == 1


def test_classify_and_policy_look_their_model_up_once(served: InProcessServer, models: CountingModels) -> None:
    with grpc.insecure_channel(served.grpc_address) as channel:
        stub = v1_grpc.CnnServeStub(channel)
        image = encode(random_rgb(40, 30).convert("L"))
        classified = stub.Classify(v1.ClassifyRequest(model_name="lenet5", images=[image], top_k=3), timeout=60)
        assert len(classified.results) == 1 and len(classified.results[0].classes) == 3
        assert models.lookups == 1
        board = "\n".join(["." * 19] * 19)
        policy = stub.Policy(
            v1.PolicyRequest(model_name="alphago_policy", board=board, to_move=v1.BLACK, top_k=2), timeout=60
        )
        assert len(policy.top_moves) == 2 and policy.legal_moves == 361
    assert models.lookups == 2


def test_a_refused_request_is_counted_under_its_model_without_looking_again(
    served: InProcessServer, models: CountingModels
) -> None:
    with tc.InferenceServerClient(served.grpc_address) as client, pytest.raises(Exception, match="expects FP32"):
        client.infer("lenet5", [triton_input("input", np.zeros((1, 1, 32, 32), np.float64), "FP64")])
    assert models.lookups == 1
