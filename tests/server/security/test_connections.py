"""Connection hygiene against a real server: streams per connection, keepalive abuse, and
connections aged or idle ended by GOAWAY, each with what a client sees (nothing on time)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as tc
from harness import serving, triton_input
from tritonclient.utils import InferenceServerException

from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc


def left_ready(channel: grpc.Channel, timeout: float = 30) -> bool:
    """Whether ``channel``, READY now, leaves READY (the server ended its connection) in time."""
    states: list[grpc.ChannelConnectivity] = []
    changed = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        states.append(state)
        changed.set()

    channel.subscribe(watch, try_to_connect=False)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if states and states[-1] is not grpc.ChannelConnectivity.READY:
                return True
            changed.wait(0.1)
            changed.clear()
        return False
    finally:
        channel.unsubscribe(watch)


def live(channel: grpc.Channel) -> bool:
    return bool(pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=30).live)


def test_calls_beyond_the_streams_of_a_connection_wait_or_are_refused_unprocessed(small_repo: Path) -> None:
    """Two streams per connection: of eight calls at once on one channel, each is answered or
    refused with REFUSED_STREAM (UNAVAILABLE) before the server did anything with it: gRPC's
    client mostly holds calls beyond the server's limit, but clean-clone runs have seen it send
    some anyway, even on a connection long past its SETTINGS. Refused calls reached no batch and
    are answered when retried; the batcher (holding requests 200 ms) never saw more than two
    calls together, and counted each call once."""
    with serving(small_repo, "--model", "cifar_resnet20", "--grpc-max-concurrent-streams", "2",
                 "--max-queue-delay-us", "200000") as proc:  # fmt: skip
        x = np.zeros((1, 3, 32, 32), np.float32)
        with tc.InferenceServerClient(proc.grpc_address) as client:  # one channel, one connection
            assert client.is_server_ready()
            answered: list[object] = []
            refused: list[str] = []

            def call() -> None:
                try:
                    answered.append(client.infer("cifar_resnet20", [triton_input("input", x)], client_timeout=60))
                except InferenceServerException as exc:
                    refused.append(f"{exc.status()} {exc.message()}")

            threads = [threading.Thread(target=call) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert len(answered) + len(refused) == 8
            assert len(answered) >= 2, refused
            for reason in refused:
                assert "UNAVAILABLE" in reason and "RST_STREAM" in reason and "error code 7" in reason, reason
            served = client.get_inference_statistics("cifar_resnet20").model_stats[0].inference_count
            assert served == len(answered)  # a refused call never reached the model
            for _ in refused:
                answered.append(client.infer("cifar_resnet20", [triton_input("input", x)], client_timeout=60))
            stats = client.get_inference_statistics("cifar_resnet20").model_stats[0]
    assert len(answered) == 8
    assert stats.inference_count == 8 and max(b.batch_size for b in stats.batch_stats) <= 2


def test_a_client_pinging_too_often_is_sent_away(small_repo: Path) -> None:
    """gRPC's keepalive policy: pings without calls more often than allowed earn strikes, and past
    them the server ends the connection (GOAWAY too_many_pings); the next call connects again."""
    with serving(small_repo, "--model", "lenet5", "--grpc-http2-min-recv-ping-interval-without-data", "60000",
                 "--grpc-http2-max-ping-strikes", "1") as proc:  # fmt: skip
        options = [("grpc.keepalive_time_ms", 200), ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.http2.max_pings_without_data", 0)]  # fmt: skip
        with grpc.insecure_channel(proc.grpc_address, options=options) as channel:
            assert live(channel)
            assert left_ready(channel), "the server kept a connection that pings every 200 ms"
            assert live(channel)  # a new connection


AGED = ["--grpc-max-connection-age", "500", "--grpc-max-connection-age-grace", "5000"]
IDLE = ["--grpc-max-connection-idle", "500"]


def test_aged_and_idle_connections_are_ended_and_clients_reconnect(small_repo: Path) -> None:
    for flags in (AGED, IDLE):
        with (
            serving(small_repo, "--model", "lenet5", *flags) as proc,
            grpc.insecure_channel(proc.grpc_address) as channel,
        ):
            assert live(channel)
            assert left_ready(channel), f"a connection outlived {flags[0]}"
            assert live(channel)
