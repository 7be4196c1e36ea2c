"""The GPU path measured in one run: raw ONNX Runtime against the server, as issue 12 asks.

    python -m bench.vs_gpu [--device cuda] [--seconds 5] [--callers 1,8,16,32,64,128]

Prints, side by side and with ratios to raw ONNX Runtime's best batch:

- raw ONNX Runtime on ``--model`` at batch 1/8/32/64, numpy in and out and through IO binding;
- the server at each caller count with float32 single images, uint8 single images (an
  ``--uint8-input`` export), 8 float32 images per request, and a ``--fp16`` export;
- batch-1 latency through the server with and without ``--cuda-graphs``;
- ``--deep`` models (VGG-16, VGG-19, ResNet-152) at batch 1 and 64, raw and through the server.

Exports what is missing into ``--repo`` first. Meant for a lent GPU (bench/gpu_check.sh); it
runs on the CPU too (``--device cpu``), slowly, which is how it is checked before a GPU session.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import ROOT, closed_loop, ensure_exported, infer_request, progress, running_server
from bench.vs_raw import raw_session, raw_throughput_of
from cnnserve.repository import load_entry


def ensure_variant(repo: Path, name: str, base: str, *flags: str) -> None:
    if not (repo / name / "config.json").is_file():
        progress(f"exporting {name} ({base} {' '.join(flags)}) into {repo}/ ...")
        command = [sys.executable, "-m", "cnnserve", "export", base, *flags, "--name", name, "--repo", str(repo)]
        subprocess.run(command, check=True)


def bound_throughput(session: ort.InferenceSession, input_name: str, x: np.ndarray, seconds: float) -> float:
    """Items per second through IO binding, outputs left where the provider put them."""
    binding = session.io_binding()
    binding.bind_cpu_input(input_name, x)
    for output in session.get_outputs():
        binding.bind_output(output.name)
    session.run_with_iobinding(binding)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run_with_iobinding(binding)
        done += len(x)
    return done / (time.perf_counter() - started)


def raw_table(repo: Path, model: str, device: str, batches: list[int], seconds: float) -> dict[int, float]:
    config = load_entry(repo / model)
    spec = config.inputs[0]
    session = raw_session(config.onnx_path, device)
    best: dict[int, float] = {}
    for batch in batches:
        x = np.random.default_rng(0).standard_normal((batch, *spec.shape), dtype=np.float32)
        numpy_io = raw_throughput_of(session, spec.name, x, seconds)
        bound = bound_throughput(session, spec.name, x, seconds)
        best[batch] = max(numpy_io, bound)
        print(f"  raw {model} batch {batch:>3}: {numpy_io:>9,.1f} img/s numpy I/O, {bound:>9,.1f} img/s IO binding")
    return best


def server_row(address: str, repo: Path, model: str, x: np.ndarray, callers: list[int], seconds: float) -> list[float]:
    request = infer_request(model, load_entry(repo / model).inputs[0].name, x)
    rates = []
    for n in callers:
        report = closed_loop(address, request, concurrency=n, seconds=seconds, items_per_request=len(x), warmup=0.5)
        rates.append(report.items_per_second)
    return rates


def latency_ms(address: str, repo: Path, model: str, x: np.ndarray, seconds: float) -> float:
    request = infer_request(model, load_entry(repo / model).inputs[0].name, x)
    return closed_loop(address, request, concurrency=1, seconds=seconds, warmup=0.5).percentile(50) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measured point")
    parser.add_argument("--callers", default="1,8,16,32,64,128")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--deep", default="vgg16,vgg19,resnet152", help="comma-separated; '' to skip")
    args = parser.parse_args()
    callers = [int(c) for c in args.callers.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    model, uint8, fp16 = args.model, f"{args.model}_uint8", f"{args.model}_fp16"
    deep = [m for m in args.deep.split(",") if m]
    ensure_exported(args.repo, model, *deep)
    ensure_variant(args.repo, uint8, model, "--uint8-input")
    ensure_variant(args.repo, fp16, model, "--fp16")
    shape = load_entry(args.repo / model).inputs[0].shape
    rng = np.random.default_rng(1)
    one = rng.standard_normal((1, *shape), dtype=np.float32)
    eight = rng.standard_normal((8, *shape), dtype=np.float32)
    pixels = rng.integers(0, 256, (1, *load_entry(args.repo / uint8).inputs[0].shape), dtype=np.uint8)

    progress(f"raw ONNX Runtime on {args.device}")
    raw = raw_table(args.repo, model, args.device, batches, args.seconds)
    best = max(raw.values())
    serve = ["--device", args.device, "--log-level", "warning"]

    rows: dict[str, list[float]] = {}
    with running_server(args.repo, "--model", f"{model},{uint8},{fp16}", *serve) as address:
        for label, name, x in (("float32, 1 image", model, one), ("uint8, 1 image", uint8, pixels),
                               ("float32, 8 images", model, eight), ("fp16 export, 1 image", fp16, one)):  # fmt: skip
            progress(f"server: {label}, callers {callers}")
            rows[label] = server_row(address, args.repo, name, x, callers, args.seconds)
        plain_ms = latency_ms(address, args.repo, model, one, args.seconds)
    graphs_ms = float("nan")
    if args.device == "cuda":
        with running_server(args.repo, "--model", model, "--cuda-graphs", "on", *serve) as address:
            graphs_ms = latency_ms(address, args.repo, model, one, args.seconds)

    best_batch = max(raw, key=raw.__getitem__)
    print(f"\n{model} on {args.device}: raw ONNX Runtime's best {best:,.1f} img/s (batch {best_batch})")
    print(f"{'callers':<22}" + "".join(f"{n:>10}" for n in callers))
    for label, rates in rows.items():
        print(f"{label:<22}" + "".join(f"{r:>10,.0f}" for r in rates))
        print(f"{'  / raw best':<22}" + "".join(f"{r / best:>10.2f}" for r in rates))
    raw_b1_ms = 1e3 / raw[1] if 1 in raw else float("nan")
    print(f"batch-1 latency p50: server {plain_ms:.2f} ms, with CUDA graphs {graphs_ms:.2f} ms, "
          f"raw ONNX Runtime {raw_b1_ms:.2f} ms a run")  # fmt: skip

    for name in deep:
        progress(f"{name}: raw and server at batch 1 and 64")
        deep_raw = raw_table(args.repo, name, args.device, [1, 64], args.seconds)
        x1 = rng.standard_normal((1, *load_entry(args.repo / name).inputs[0].shape), dtype=np.float32)
        with running_server(args.repo, "--model", name, "--max-batch-size", "64", *serve) as address:
            at1 = latency_ms(address, args.repo, name, x1, args.seconds)
            at64 = server_row(address, args.repo, name, x1, [64], args.seconds)[0]
        print(f"{name}: batch 1 p50 {at1:.2f} ms (raw {1e3 / deep_raw[1]:.2f} ms); 64 callers {at64:,.0f} img/s "
              f"(raw batch 64 {deep_raw[64]:,.0f}, ratio {at64 / deep_raw[64]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
