"""The server against raw ONNX Runtime in one process, same model, same machine, one run.

    python bench/vs_raw.py [--model resnet50] [--concurrency 8] [--seconds 20]

Raw ONNX Runtime is measured at several batch sizes and its best is the reference; the server
then takes single-image requests from ``--concurrency`` callers (closed loop), batching them
itself. Target on a two-core machine: at least 0.9 of raw.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import ROOT, closed_loop, ensure_exported, infer_request, progress, running_server
from cnnserve.repository import load_entry


def raw_session(path: Path, device: str) -> ort.InferenceSession:
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        ort.preload_dlls()
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), providers=providers)
    if session.get_providers()[0] != providers[0]:
        raise SystemExit(f"raw ONNX Runtime fell back to {session.get_providers()[0]}")
    return session


def raw_throughput(session: ort.InferenceSession, input_name: str, shape: tuple[int, ...], batch: int,
                   seconds: float) -> float:  # fmt: skip
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    return raw_throughput_of(session, input_name, x, seconds)


def raw_throughput_of(session: ort.InferenceSession, input_name: str, x: np.ndarray, seconds: float) -> float:
    """Items per second of ``session`` run on the batch ``x`` over and over for ``seconds``."""
    batch = len(x)
    session.run(None, {input_name: x})  # warm-up: first-run allocations
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {input_name: x})
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batches", default="1,4,8,16")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="for both raw and server")
    parser.add_argument("server_args", nargs="*", help="extra `cnnserve serve` flags, after --")
    args = parser.parse_args()
    ensure_exported(args.repo, args.model)
    config = load_entry(args.repo / args.model)
    spec = config.inputs[0]
    shape = spec.shape
    onnx_path = config.onnx_path

    progress(f"raw ONNX Runtime, {args.model}, batch sizes {args.batches}")
    raw = {}
    session = raw_session(onnx_path, args.device)
    for batch in (int(b) for b in args.batches.split(",")):
        raw[batch] = raw_throughput(session, spec.name, shape, batch, args.seconds / 2)
        progress(f"  batch {batch}: {raw[batch]:,.1f} img/s")
    best_batch = max(raw, key=lambda b: raw[b])

    progress(f"server, {args.model}, {args.concurrency} callers of one image each")
    x = np.random.default_rng(1).standard_normal((1, *shape), dtype=np.float32)
    with running_server(args.repo, "--model", args.model, "--device", args.device, *args.server_args) as address:
        result = closed_loop(address, infer_request(args.model, spec.name, x),
                             concurrency=args.concurrency, seconds=args.seconds)  # fmt: skip
    ratio = result.items_per_second / raw[best_batch]
    print(f"model {args.model}, input {list(shape)} float32, {session.get_providers()[0]}")
    print(f"raw ONNX Runtime, best batch {best_batch}: {raw[best_batch]:,.1f} img/s")
    print(f"server, concurrency {args.concurrency}:      {result.items_per_second:,.1f} img/s "
          f"(p50 {result.percentile(50) * 1e3:.1f} ms, p99 {result.percentile(99) * 1e3:.1f} ms)")  # fmt: skip
    print(f"ratio server/raw: {ratio:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
