"""``cnnserve serve --workers N``: real supervisors and workers on free ports, called over the network."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tc_aio
import tritonclient.http as th
from grpc_health.v1 import health_pb2
from harness import (
    ServerProcess,
    accepted,
    at,
    cnnserve,
    copy_repository,
    model_total,
    ort_run,
    scrape,
    serving,
    start_server,
    triton_input,
    wait_ready,
)
from tritonclient.utils import InferenceServerException

from cnnserve.server.parallel.protocol import settings_from_json, settings_json
from cnnserve.server.parallel.supervisor import CRASH_LIMIT, reserve_port, worker_count, worker_settings
from cnnserve.server.runtime import devices
from cnnserve.server.settings import Settings

STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def started_pids(proc: ServerProcess) -> dict[int, list[int]]:
    """Worker number -> the pids started for it, in order (from the supervisor's log)."""
    pids: dict[int, list[int]] = {}
    for number, pid in STARTED.findall(proc.output):
        pids.setdefault(int(number), []).append(int(pid))
    return pids


def lenet5_input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 1, 32, 32), dtype=np.float32)


# -- settings and ports ------------------------------------------------------------------------


def test_auto_workers_and_each_workers_settings() -> None:
    cores = os.cpu_count() or 1
    assert worker_count(Settings(workers=3)) == 3
    assert worker_count(Settings(workers=None, device="cpu")) == max(1, cores // 2)
    each = worker_settings(Settings(workers=2, grpc_port=0, metrics_port=9000), 2, 41234)
    assert (each.grpc_port, each.metrics_port, each.workers) == (41234, -1, 1)
    assert each.intra_op_threads == each.decode_threads == max(1, cores // 2)  # its share of the cores
    assert worker_settings(Settings(intra_op_threads=3), 2, 1).intra_op_threads == 3  # as set
    given = Settings(workers=2, models=("lenet5", "resnet50"), max_queue_size=7, model_control_mode="poll")
    assert settings_from_json(settings_json(given)) == given
    explicit = Settings(model_control_mode="explicit", load_models=("lenet5", "*"))
    assert settings_from_json(settings_json(explicit)) == explicit


def test_the_supervisor_refuses_a_port_in_use_instead_of_sharing_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match=r"cannot listen on 127.0.0.1:\d+ \(in use\?\)"):
            reserve_port("127.0.0.1", taken.getsockname()[1])
    held = reserve_port("127.0.0.1", 0)
    try:
        port = held.getsockname()[1]
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # held for the workers: nobody else binds it
    finally:
        held.close()


# -- serving -----------------------------------------------------------------------------------


def test_two_workers_answer_on_one_port_and_the_metrics_count_each_request_once(small_repo: Path) -> None:
    calls = 24
    with serving(small_repo, "--workers", "2", "--model", "lenet5") as proc:
        assert "starting 2 workers (--worker-timeout 30s)" in proc.output  # the default
        pids = started_pids(proc)
        assert sorted(pids) == [0, 1] and len({p for ps in pids.values() for p in ps}) == 2
        for number, (pid,) in pids.items():
            assert f"worker {number} pid {pid} cnnserve.server: ready in" in proc.output
        # One connection per client: the kernel spreads connections (not calls) over the workers.
        for i in range(calls):
            with tc.InferenceServerClient(proc.grpc_address) as client:
                assert client.is_server_ready() and client.is_model_ready("lenet5")
                x = lenet5_input(i)
                got = client.infer("lenet5", [triton_input("input", x)]).as_numpy("logits")
                np.testing.assert_allclose(got, ort_run(small_repo, "lenet5", x), rtol=1e-5, atol=1e-6)
        for i in range(8):  # HTTP shares its port the same way
            http_client = th.InferenceServerClient(proc.http_address)
            tensor = th.InferInput("input", [1, 1, 32, 32], "FP32")
            tensor.set_data_from_numpy(lenet5_input(i))
            got = http_client.infer("lenet5", [tensor]).as_numpy("logits")
            np.testing.assert_allclose(got, ort_run(small_repo, "lenet5", lenet5_input(i)), rtol=1e-5, atol=1e-6)
            http_client.close()
        samples = scrape(proc.metrics_address)
        ok = {lab["rpc"]: v for lab, v in samples["cnnserve_requests_total"]
              if lab["model"] == "lenet5" and lab["code"] == "OK"}  # fmt: skip
        assert ok == {"ModelInfer": calls, "/v2/models/{name}/infer": 8}  # summed over the workers, each once
        assert model_total(samples, "lenet5", "cnnserve_request_duration_seconds_count") == calls + 8
        per_worker = {lab["pid"]: v for lab, v in samples["cnnserve_worker_requests"]}
        assert set(per_worker) == {str(p) for ps in pids.values() for p in ps}
        assert all(v > 0 for v in per_worker.values()) and sum(per_worker.values()) == calls + 8
        info = [lab for lab, v in samples["cnnserve_model_info"] if lab["model"] == "lenet5" and v == 1]
        assert len(info) == 1 and info[0]["state"] == "ready"
        assert model_total(samples, "lenet5", "cnnserve_inflight_requests") == 0
    assert "all 2 workers ready" in proc.output and "stopped" in proc.output


def test_bench_and_compare_read_the_summed_metrics_of_every_worker(small_repo: Path, tmp_path: Path) -> None:
    with serving(small_repo, "--workers", "2", "--model", "lenet5") as proc:
        done = cnnserve("bench", "--model", "lenet5", "--concurrency", "16", "--connections", "16", "--requests", "160",
                        "--json", *at(proc))  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert (result["requests_ok"], result["requests_failed"]) == (160, 0)
        assert result["server"]["runs"] >= 1 and result["server"]["compute_ms"] > 0
        samples = scrape(proc.metrics_address)
        per_worker = [v for _, v in samples["cnnserve_worker_requests"]]
        assert len(per_worker) == 2 and all(v > 0 for v in per_worker)  # 16 connections: p(all on one) = 2^-15
        out = tmp_path / "report"
        done = cnnserve("compare", "--models", "lenet5", "--batch", "1,4", "--requests", "5", "--out", str(out),
                        *at(proc))  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads((out / "report.json").read_text())
        points = [(p["model"], p["batch"], p["requests"]) for p in report["points"]]
        assert points == [("lenet5", 1, 5), ("lenet5", 4, 5)]
        assert report["models"]["lenet5"]["weight_layers"] == 5  # from the one summed model_info


Outcomes = list[tuple[float, str]]  # (time.monotonic() at the answer, "OK" or the status and message)
# What a call sees when the connection under it goes away (the worker died, or a reconnection
# reached its listening socket as it closed): the transport's words, not a server's answer.
CONNECTION_LOST = re.compile(r"\[StatusCode.UNAVAILABLE\] (Stream removed|failed to connect to all addresses)")


def calls_around(
    proc: ServerProcess,
    model: str,
    x: np.ndarray,
    act: Callable[[], None],
    until: Callable[[], bool],
    callers: int = 16,
) -> list[Outcomes]:
    """``callers`` closed-loop callers, each on a connection of its own, call ``model`` before
    ``act()``, after it until ``until()`` holds, and a second beyond; each caller's outcomes. A
    caller whose call fails waits a little before the next, as a client backs off."""

    async def load() -> list[Outcomes]:
        # A channel of its own per caller: gRPC would otherwise share one connection between them.
        clients = [tc_aio.InferenceServerClient(proc.grpc_address, channel_args=[("grpc.use_local_subchannel_pool", 1)])
                   for _ in range(callers)]  # fmt: skip
        outcomes: list[Outcomes] = [[] for _ in range(callers)]
        stop = asyncio.Event()

        async def caller(number: int) -> None:
            while not stop.is_set():
                try:
                    await clients[number].infer(model, [triton_input("input", x)], client_timeout=60)
                    outcomes[number].append((time.monotonic(), "OK"))
                except InferenceServerException as exc:
                    outcomes[number].append((time.monotonic(), str(exc)))
                    await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(caller(n)) for n in range(callers)]
        while min(map(len, outcomes)) < 3:  # every caller connected and answered
            await asyncio.sleep(0.01)
        act()
        deadline = time.monotonic() + 120
        while not until():
            assert time.monotonic() < deadline, proc.output
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # calls after it too: reconnections land wherever the kernel puts them
        stop.set()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.close()
        return outcomes

    return asyncio.run(load())


def check_only_lost_connections_failed(outcomes: list[Outcomes]) -> list[list[str]]:
    """Each caller's failures: only connections lost under it, in one burst (once a call got
    through after them, no other failed), and it got through in the end. Returns the failures."""
    failed = []
    for caller in outcomes:
        said = [what for _, what in caller]
        failures = [what for what in said if what != "OK"]
        assert all(CONNECTION_LOST.match(what) for what in failures), failures  # no server refused a call
        if failures:
            first = said.index(failures[0])
            assert "OK" not in said[first : first + len(failures)], said  # one burst
        assert said[-1] == "OK"
        failed.append(failures)
    assert not all(failed), failed  # 16 connections: p(all on one worker) = 2^-15
    return failed


def replaced_and_ready(proc: ServerProcess, number: int) -> bool:
    pids = started_pids(proc).get(number, [])
    return len(pids) > 1 and f"worker {number} (pid {pids[-1]}) is ready" in proc.output


def test_a_killed_worker_is_replaced_and_only_its_calls_in_flight_fail(small_repo: Path) -> None:
    """Callers on their own connections lose only calls whose connection died with the worker (the
    one in flight, or one sent as it closed): the replacement listens only once its models are
    ready, so no reconnection lands on a worker that refuses it while it loads, however the kernel
    spreads them."""
    # Connections that age out every half second: callers reconnect all the while, while the
    # replacement starts and loads too (every model of the repository, which takes a while).
    with serving(small_repo, "--workers", "2", "--grpc-max-connection-age", "500") as proc:
        victim = started_pids(proc)[0][0]
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
        answered_by_victim: list[float] = []

        def kill() -> None:
            samples = scrape(proc.metrics_address)["cnnserve_worker_requests"]
            answered_by_victim.append(sum(v for lab, v in samples if lab["pid"] == str(victim)))
            os.kill(victim, signal.SIGKILL)

        outcomes = calls_around(proc, "cifar_resnet20", x, kill, lambda: replaced_and_ready(proc, 0))
        assert answered_by_victim[0] > 0  # the killed worker was serving some of these callers
        check_only_lost_connections_failed(outcomes)
        replacement = started_pids(proc)[0][1]
        assert f"worker 0 (pid {victim}) exited with signal SIGKILL; starting a replacement" in proc.output
        # The replacement said where it listens only after its models were ready.
        lines = [line for line in proc.output.splitlines() if f"pid {replacement} " in line]
        loaded = [i for i, line in enumerate(lines) if "model cifar_resnet20 version 1 ready on" in line]
        listening = [i for i, line in enumerate(lines) if "gRPC on" in line]
        assert len(loaded) == len(listening) == 1 and loaded < listening, lines
        wait_ready(proc.grpc_address)
        samples = scrape(proc.metrics_address)
        assert {lab["pid"] for lab, _ in samples["cnnserve_worker_requests"]} == {
            str(p) for p in (started_pids(proc)[1][0], replacement)
        }  # the dead worker's live series is gone; its counts stay in the sums
        assert model_total(samples, "cifar_resnet20", "cnnserve_inflight_requests") == 0


def test_a_hung_worker_is_killed_after_the_timeout_and_the_others_callers_never_notice(small_repo: Path) -> None:
    with serving(small_repo, "--workers", "2", "--model", "lenet5", "--worker-timeout", "2") as proc:
        assert "starting 2 workers (--worker-timeout 2s)" in proc.output  # the flag, as the supervisor took it
        hung = started_pids(proc)[0][0]
        stopped_at: list[float] = []

        def hang() -> None:
            os.kill(hung, signal.SIGSTOP)  # alive, its connections open, answering nothing
            stopped_at.append(time.monotonic())

        outcomes = calls_around(proc, "lenet5", lenet5_input(0), hang, lambda: replaced_and_ready(proc, 0))
        said = re.search(rf"worker 0 \(pid {hung}\): no heartbeat for ([0-9.]+)s, more than --worker-timeout 2s; "
                         r"killing it \(SIGKILL\)", proc.output)  # fmt: skip
        assert said, proc.output
        assert float(said[1]) >= 2.0
        assert f"worker 0 (pid {hung}) exited with signal SIGKILL (no heartbeat for" in proc.output
        with pytest.raises(ProcessLookupError):
            os.kill(hung, 0)  # killed and reaped, though stopped
        failed = check_only_lost_connections_failed(outcomes)
        assert any(failed), failed  # some callers were on the hung worker (p(none) = 2^-16)
        # The callers on the other worker went on being answered while this one hung: not one failure.
        untouched = [caller for caller, f in zip(outcomes, failed, strict=True) if not f]
        assert any(when > stopped_at[0] for caller in untouched for when, _ in caller)
        wait_ready(proc.grpc_address)


def test_workers_that_keep_dying_stop_the_server_and_readiness_falls_meanwhile(
    small_repo: Path, tmp_path: Path
) -> None:
    repo = copy_repository(small_repo, tmp_path / "repo")
    proc = start_server(repo, "--workers", "2", "--model", "lenet5")
    proc.wait_ready()
    shutil.rmtree(repo)  # every replacement will fail to load
    os.kill(started_pids(proc)[0][0], signal.SIGKILL)
    # The survivor answers, but not ready: health speaks for the whole server.
    said_not_ready = False
    deadline = time.monotonic() + 60
    while not said_not_ready and proc.process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(InferenceServerException), tc.InferenceServerClient(proc.grpc_address) as client:
            said_not_ready = client.is_server_live() and not client.is_server_ready()
        time.sleep(0.05)
    code = proc.process.wait(timeout=120)
    proc.close()
    assert said_not_ready, proc.output
    assert code == 1
    assert f"{CRASH_LIMIT} replacements in a row died before they were ready; stopping the server" in proc.output
    assert len(started_pids(proc)[0]) == 1 + CRASH_LIMIT


def test_sigterm_under_load_answers_every_accepted_request(small_repo: Path) -> None:
    proc = start_server(small_repo, "--workers", "2", "--max-queue-delay-us", "30000000", "--model", "cifar_resnet20")
    proc.wait_ready()
    xs = [np.random.default_rng(i).standard_normal((1, 3, 32, 32), dtype=np.float32) for i in range(12)]

    async def load_then_terminate() -> list[np.ndarray]:
        clients = [tc_aio.InferenceServerClient(proc.grpc_address) for _ in range(6)]
        calls = [asyncio.create_task(clients[i % 6].infer("cifar_resnet20", [triton_input("input", x)]))
                 for i, x in enumerate(xs)]  # fmt: skip
        # Held in the workers' batchers (or answered, where one found its model idle).
        while sum(accepted(proc, "cifar_resnet20")) < len(xs):
            await asyncio.sleep(0.05)
        proc.process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*calls)
        for client in clients:
            await client.close()
        return [r.as_numpy("logits") for r in results]

    outputs = asyncio.run(load_then_terminate())
    code = proc.process.wait(timeout=60)  # no second signal: that one would kill the workers
    proc.close()
    assert code == 0, proc.output
    np.testing.assert_allclose(np.concatenate(outputs), ort_run(small_repo, "cifar_resnet20", np.concatenate(xs)),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    assert proc.output.count("cnnserve.server: stopped") == 2 and "supervisor" in proc.output


def test_a_second_signal_kills_the_workers_at_once(small_repo: Path) -> None:
    proc = start_server(small_repo, "--workers", "2", "--model", "lenet5", "--grace-seconds", "120")
    proc.wait_ready()
    stuck = started_pids(proc)[0][0]
    os.kill(stuck, signal.SIGSTOP)  # a worker that cannot finish its drain
    proc.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.process.poll() is None  # still waiting for the stuck worker
    proc.process.send_signal(signal.SIGTERM)
    code = proc.process.wait(timeout=30)  # not the 120 s grace: forced
    proc.close()
    assert code == 1 and "second signal: killing the workers" in proc.output
    with pytest.raises(ProcessLookupError):
        os.kill(stuck, 0)  # killed and reaped


def test_a_worker_that_cannot_start_stops_the_supervisor_with_the_reason(small_repo: Path, tmp_path: Path) -> None:
    # The supervisor does not read the repository (on the CPU); each worker does, and fails.
    missing = tmp_path / "missing"
    proc = start_server(small_repo, "--workers", "2", "--repo", str(missing), wait=False)
    proc.collect()
    code = proc.process.wait(timeout=120)
    proc.close()
    assert code == 1, proc.output
    # The worker says why by its exit status and its heartbeat file; the supervisor's line names it.
    said = re.search(r"supervisor pid \d+ cnnserve.supervisor: worker \d \(pid \d+\) could not start "
                     r"\(exit status 3\): (.*); stopping the server", proc.output)  # fmt: skip
    assert said, proc.output
    assert said[1].startswith(f"model repository {missing} does not exist")
    assert "cnnserve ready" not in proc.output


def test_the_supervisor_refuses_what_the_single_server_refuses_in_one_line(small_repo: Path) -> None:
    if devices.gpu_present():
        pytest.skip("a GPU is present: --device cuda can work here")
    proc = start_server(small_repo, "--workers", "2", "--device", "cuda", wait=False)
    proc.collect()
    code = proc.process.wait(timeout=60)
    proc.close()
    assert code == 1 and "--device cuda: no NVIDIA driver found" in proc.output
    assert "Traceback" not in proc.output and "worker 0 started" not in proc.output


def test_health_speaks_for_every_worker(small_repo: Path) -> None:
    import grpc
    from grpc_health.v1 import health_pb2_grpc

    with serving(small_repo, "--workers", "2", "--model", "lenet5") as proc:
        for _ in range(6):  # several connections: whichever worker a probe reaches
            with grpc.insecure_channel(proc.grpc_address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for service in ("", "lenet5"):
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
