"""ResNet-50 images per second three ways through one server, side by side in one run:
Classify with JPEG bytes, KServe V2 with uint8 pixels (an ``--uint8-input`` export), and KServe V2
with float32 tensors; then where the time goes.

    python -m bench.vs_classify [--concurrency 8] [--seconds 20]

Each caller sends one image per request, closed loop. The JPEG is a synthetic 500x375 photo
(ImageNet's typical size). Decoding is timed in this process on the same bytes; queue and
compute come from the server's ModelStatistics over each run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import grpc

from bench.common import (
    CHANNEL_OPTIONS,
    ROOT,
    LoadReport,
    closed_loop,
    ensure_exported,
    infer_request,
    progress,
    running_server,
)
from cnnserve.client.bench import synthetic_photo
from cnnserve.generated.cnnserve.v1 import service_pb2 as v1_pb
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc
from cnnserve.images import ImagePipeline
from cnnserve.repository import load_entry

MODEL, UINT8_MODEL = "resnet50", "resnet50_uint8"


def ensure_uint8(repo: Path) -> None:
    if not (repo / UINT8_MODEL / "config.json").is_file():
        progress(f"exporting {UINT8_MODEL} (resnet50 --uint8-input) into {repo}/ ...")
        command = [sys.executable, "-m", "cnnserve", "export", "resnet50", "--uint8-input", "--name", UINT8_MODEL,
                   "--repo", str(repo)]  # fmt: skip
        subprocess.run(command, check=True)


def statistics(address: str, model: str) -> tuple[int, int, int, int]:
    """(requests, queue ns, items computed, compute ns) so far."""
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(pb.ModelStatisticsRequest(name=model))
    s = reply.model_stats[0]
    # compute_infer is charged once per request with its whole batch's time; per-batch sums
    # divided by items give the compute per image.
    batch_ns = sum(b.compute_infer.ns for b in s.batch_stats)
    return s.inference_stats.queue.count, s.inference_stats.queue.ns, s.inference_count, batch_ns


def decode_ms(data: bytes, pipeline: ImagePipeline, repeat: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        pipeline(data, 0, 50_000_000)
    return (time.perf_counter() - started) / repeat * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("server_args", nargs="*", help="extra `cnnserve serve` flags, after --")
    args = parser.parse_args()
    ensure_exported(args.repo, MODEL)
    ensure_uint8(args.repo)
    preprocessing = load_entry(args.repo / MODEL).preprocessing
    assert preprocessing is not None, f"{MODEL} is an image classifier"
    float_pipeline = ImagePipeline.from_config(preprocessing, "FP32")
    uint8_pipeline = ImagePipeline.from_config(preprocessing, "UINT8")
    jpeg = synthetic_photo()
    pixels = uint8_pipeline(jpeg, 0, 50_000_000)
    modes: dict[str, tuple[str, pb.ModelInferRequest | v1_pb.ClassifyRequest]] = {
        "Classify, JPEG": (MODEL, v1_pb.ClassifyRequest(model_name=MODEL, images=[jpeg], top_k=5)),
        "V2, uint8 pixels": (UINT8_MODEL, infer_request(UINT8_MODEL, "input", pixels[None])),
        "V2, float32": (MODEL, infer_request(MODEL, "input", float_pipeline.tensor(pixels)[None])),
    }
    payload = {"Classify, JPEG": len(jpeg), "V2, uint8 pixels": pixels.nbytes, "V2, float32": pixels.nbytes * 4}
    progress(f"decode + preprocess in process: {decode_ms(jpeg, float_pipeline):.2f} ms per {len(jpeg):,}-byte JPEG")
    results: dict[str, tuple[LoadReport, float, float]] = {}
    with running_server(args.repo, "--model", f"{MODEL},{UINT8_MODEL}", *args.server_args) as address:
        for mode, (model, request) in modes.items():
            progress(f"{mode}: {args.concurrency} callers, {args.seconds:.0f} s")
            before = statistics(address, model)
            load = closed_loop(address, request, concurrency=args.concurrency, seconds=args.seconds)
            after = statistics(address, model)
            requests, queue_ns, items, compute_ns = (a - b for a, b in zip(after, before, strict=True))
            results[mode] = (load, queue_ns / max(requests, 1) / 1e6, compute_ns / max(items, 1) / 1e6)
    decode = decode_ms(jpeg, float_pipeline)
    reference = results["V2, float32"][0].items_per_second
    print(f"resnet50, {args.concurrency} callers of one image each; JPEG {len(jpeg):,} bytes (500x375); "
          f"decode + preprocess {decode:.2f} ms per image on one core")  # fmt: skip
    print(f"{'':20}{'bytes/img':>10}{'img/s':>9}{'vs f32':>8}{'p50 ms':>9}{'queue ms':>10}{'compute ms/img':>16}")
    for mode, (load, queue_ms, compute_ms) in results.items():
        print(f"{mode:20}{payload[mode]:>10,}{load.items_per_second:>9.1f}{load.items_per_second / reference:>8.3f}"
              f"{load.percentile(50) * 1e3:>9.1f}{queue_ms:>10.1f}{compute_ms:>16.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
