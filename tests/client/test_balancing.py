"""Client-side balancing: a ``--server`` target that resolves to several replicas (``dns:///`` over
a headless Service; here gRPC's ``ipv4:`` list of three real servers on loopback, the stand-in for
a name with three A records) gets round_robin, and every replica serves a share of the calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from harness import ServerProcess, cnnserve, model_total, replicas

from cnnserve.client.channel import CHANNEL_OPTIONS, ROUND_ROBIN, balanced, channel, channel_options
from cnnserve.client.scrape import scrape
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc

MODEL = "lenet5"


def test_targets_with_a_resolver_scheme_get_round_robin_and_plain_addresses_do_not() -> None:
    for target in ("dns:///cnnserve-headless.default.svc.cluster.local:8001", "dns://10.96.0.10/cnnserve:8001",
                   "ipv4:127.0.0.1:8001,127.0.0.1:8011", "ipv6:[::1]:8001", "DNS:///cnnserve:8001"):  # fmt: skip
        assert balanced(target), target
        assert ("grpc.service_config", ROUND_ROBIN) in channel_options(target)
    for target in ("localhost:8001", "cnnserve:8001", "10.0.0.1:8001", "[::1]:8001", "unix:/tmp/cnnserve.sock"):
        assert not balanced(target), target
        assert channel_options(target) == CHANNEL_OPTIONS  # gRPC's default policy: pick_first
    assert json.loads(ROUND_ROBIN) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert ("grpc.use_local_subchannel_pool", 1) in channel_options("dns:///cnnserve:8001", own_connection=True)


@pytest.fixture(scope="module")
def fleet(small_repo: Path) -> Iterator[list[ServerProcess]]:
    with replicas(small_repo, 3, "--model", MODEL) as servers:
        yield servers


def target(fleet: list[ServerProcess]) -> str:
    return "ipv4:" + ",".join(s.grpc_address for s in fleet)


def answered(fleet: list[ServerProcess]) -> list[float]:
    return [model_total(scrape(s.metrics_address), MODEL, "cnnserve_requests_total") for s in fleet]


def test_one_channel_spreads_its_calls_over_every_replica(fleet: list[ServerProcess]) -> None:
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32), dtype=np.float32)
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    before = answered(fleet)
    with channel(target(fleet)) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        for _ in range(30):
            stub.ModelInfer(request, timeout=30)
    served = [after - earlier for after, earlier in zip(answered(fleet), before, strict=True)]
    assert sum(served) == 30 and all(n > 0 for n in served), served


def test_cnnserve_bench_takes_such_a_target_and_reaches_every_replica(fleet: list[ServerProcess]) -> None:
    """The client subcommands' --server, through the load generator's asyncio channels."""
    before = answered(fleet)
    run = cnnserve("bench", "--server", target(fleet), "--metrics", fleet[0].metrics_address, "--model", MODEL,
                   "--requests", "90", "--concurrency", "3", "--warmup", "0", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["requests_ok"] == 90 and report["requests_failed"] == 0, report
    served = [after - earlier for after, earlier in zip(answered(fleet), before, strict=True)]
    assert sum(served) >= 90 and all(n > 0 for n in served), served
