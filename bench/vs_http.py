"""cnnserve over HTTP (KServe V2 REST, binary tensors) against gRPC, and each against a bare echo
server of its protocol, in one run.

    python -m bench.vs_http [--callers 8] [--seconds 8] [--rounds 2] [--models lenet5 resnet50]

One cnnserve server serves every model on both protocols; beside it a gRPC echo (``bench.echo``)
and an HTTP echo (``bench.http_echo``) answer with a reply of each model's output size. For each
model, in rounds taking turns, ``--callers`` closed-loop callers send the same input (a fixed
random tensor, raw little-endian bytes on both protocols) to: cnnserve over gRPC (V2 ModelInfer,
the callers sharing one channel, as HTTP/2 multiplexes), cnnserve over HTTP (Triton's binary
tensor extension, each caller on a keep-alive connection of its own, as HTTP/1.1 needs), the gRPC
echo and the HTTP echo (the same request bytes). The table gives requests/s (best of the rounds),
p50 latency (the lowest of the rounds) and the ratios: HTTP/gRPC for cnnserve and for the echoes,
and cnnserve/echo for each protocol. On a machine with few cores the client's own process
competes with the servers: read cnnserve's ratios against the echoes', which pay the same.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from bench.common import (
    CHANNEL_OPTIONS,
    HEADER_LENGTH,
    ROOT,
    HttpRequest,
    LoadReport,
    closed_loop,
    ensure_exported,
    http_closed_loop,
    http_infer_request,
    infer_request,
    progress,
    running_module,
    serving_with_http,
)
from bench.vs_echo import running_echo
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc
from cnnserve.repository import load_entry

SERVERS = ("cnnserve", "echo")
PROTOCOLS = ("gRPC", "HTTP")


@dataclass(frozen=True)
class Workload:
    """One model's request, the same tensor on both protocols, and the reply's size."""

    model: str
    grpc: pb.ModelInferRequest
    http: HttpRequest
    reply_floats: int

    @property
    def input_bytes(self) -> int:
        return len(self.grpc.raw_input_contents[0])


def workload(repo: Path, model: str, rng: np.random.Generator) -> Workload:
    config = load_entry(repo / model)
    spec, output = config.inputs[0], config.outputs[0]
    if len(config.inputs) != 1 or output.datatype != "FP32" or spec.datatype not in ("FP32", "UINT8"):
        raise SystemExit(f"{model}: bench.vs_http sends one FP32 or UINT8 input and reads an FP32 output")
    shape = (1, *spec.shape)
    x = rng.integers(0, 256, shape, dtype=np.uint8) if spec.datatype == "UINT8" else rng.random(shape, np.float32)
    return Workload(model, infer_request(model, spec.name, x), http_infer_request(model, spec.name, x, output.name),
                    math.prod(output.shape))  # fmt: skip


def running_http_echo(reply_floats: int) -> contextlib.AbstractContextManager[str]:
    """``python -m bench.http_echo --reply-floats N``; yields its HTTP address."""
    return running_module("bench.http_echo", "--reply-floats", str(reply_floats), address="http")


def check_grpc(address: str, work: Workload, what: str) -> None:
    """One request before the load: the reply holds the model's output size."""
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(work.grpc, timeout=120)
    got = [len(raw) for raw in reply.raw_output_contents]
    if got != [4 * work.reply_floats]:
        raise RuntimeError(f"{what}: expected one output of {4 * work.reply_floats} bytes, got {got}")


def check_http(address: str, work: Workload, what: str) -> None:
    """One request before the load: status 200, and a binary reply of the model's output size."""
    path, body, headers = work.http
    request = urllib.request.Request(f"http://{address}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, length, reply = response.status, response.headers.get(HEADER_LENGTH), response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{what}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
    if status != 200 or length is None:
        raise RuntimeError(f"{what}: HTTP {status}, {HEADER_LENGTH} {length!r}: {reply[:500]!r}")
    sizes = [o.get("parameters", {}).get("binary_data_size") for o in json.loads(reply[: int(length)])["outputs"]]
    expected = 4 * work.reply_floats
    if sizes != [expected] or len(reply) - int(length) != expected:
        raise RuntimeError(f"{what}: expected one binary output of {expected} bytes, got {sizes}, "
                           f"{len(reply) - int(length)} bytes after the JSON")  # fmt: skip


def check(protocol: str, address: str, work: Workload, what: str) -> None:
    (check_grpc if protocol == "gRPC" else check_http)(address, work, what)


def load(protocol: str, address: str, work: Workload, callers: int, seconds: float) -> LoadReport:
    if protocol == "gRPC":
        return closed_loop(address, work.grpc, concurrency=callers, seconds=seconds)
    return http_closed_loop(address, work.http, concurrency=callers, seconds=seconds)


def print_table(work: Workload, results: dict[tuple[str, str], list[LoadReport]], callers: int, rounds: int) -> None:
    rate = {key: max(r.requests_per_second for r in reports) for key, reports in results.items()}
    p50 = {key: min(r.percentile(50) for r in reports) * 1e3 for key, reports in results.items()}
    print(f"{work.model}: {callers} callers, {work.input_bytes:,} input bytes, reply {work.reply_floats} float32; "
          f"requests/s best of {rounds} round{'s' * (rounds > 1)}")  # fmt: skip
    print(f"{'':16}{'gRPC req/s':>12}{'HTTP req/s':>12}{'HTTP/gRPC':>11}{'gRPC p50 ms':>13}{'HTTP p50 ms':>13}")
    for server in SERVERS:
        grpc_, http = rate[server, "gRPC"], rate[server, "HTTP"]
        print(f"{server:<16}{grpc_:>12,.0f}{http:>12,.0f}{http / grpc_:>11.2f}"
              f"{p50[server, 'gRPC']:>13.2f}{p50[server, 'HTTP']:>13.2f}")  # fmt: skip
    print(f"{'cnnserve/echo':<16}{rate['cnnserve', 'gRPC'] / rate['echo', 'gRPC']:>12.2f}"
          f"{rate['cnnserve', 'HTTP'] / rate['echo', 'HTTP']:>12.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["lenet5", "resnet50"])
    args = parser.parse_args()
    ensure_exported(args.repo, *args.models)
    rng = np.random.default_rng(0)
    works = [workload(args.repo, model, rng) for model in args.models]
    n = args.callers
    results: dict[str, dict[tuple[str, str], list[LoadReport]]] = {}
    with contextlib.ExitStack() as stack:
        models = [flag for model in args.models for flag in ("--model", model)]
        served_grpc, served_http = stack.enter_context(serving_with_http(args.repo, *models))
        sizes = sorted({work.reply_floats for work in works})
        echo_grpc = {size: stack.enter_context(running_echo(size)) for size in sizes}
        echo_http = {size: stack.enter_context(running_http_echo(size)) for size in sizes}
        for work in works:
            addresses = {("cnnserve", "gRPC"): served_grpc, ("cnnserve", "HTTP"): served_http,
                         ("echo", "gRPC"): echo_grpc[work.reply_floats],
                         ("echo", "HTTP"): echo_http[work.reply_floats]}  # fmt: skip
            for (server, protocol), address in addresses.items():
                check(protocol, address, work, f"{server} over {protocol} at {address}, {work.model}")
            table = results[work.model] = {}
            for round_ in range(args.rounds):
                for (server, protocol), address in addresses.items():
                    progress(f"{work.model}, round {round_ + 1}/{args.rounds}: {server} over {protocol}, {n} callers")
                    table.setdefault((server, protocol), []).append(load(protocol, address, work, n, args.seconds))

    for i, work in enumerate(works):
        if i:
            print()
        print_table(work, results[work.model], n, args.rounds)


if __name__ == "__main__":
    main()
