"""``cnnserve classify IMAGE... --model NAME``: the command-line client of the Classify RPC."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import grpc

from cnnserve.client.channel import ClientError, add_security_arguments, channel, configure, rpc_error
from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.tables import render_table


def classify(
    server: str, model: str, images: list[tuple[str, bytes]], top_k: int, *, per_request: int, timeout: float
) -> list[dict[str, Any]]:
    """Classify ``images`` (name, encoded bytes), ``per_request`` to a call; one dict per image."""
    results: list[dict[str, Any]] = []
    with channel(server) as ch:
        stub = pb_grpc.CnnServeStub(ch)
        for start in range(0, len(images), per_request):
            chunk = images[start : start + per_request]
            request = pb.ClassifyRequest(model_name=model, images=[data for _, data in chunk], top_k=top_k)
            try:
                reply = stub.Classify(request, timeout=timeout)
            except grpc.RpcError as exc:
                raise rpc_error(exc, server) from None
            for (name, _), result in zip(chunk, reply.results, strict=True):
                results.append(
                    {
                        "image": name,
                        "model": reply.model_name,
                        "version": reply.model_version,
                        "trained": reply.trained,
                        "classes": [
                            {"index": c.index, "label": c.label, "probability": c.probability} for c in result.classes
                        ],
                    }
                )
    return results


def read_images(paths: list[str]) -> list[tuple[str, bytes]]:
    images = []
    for path in paths:
        try:
            images.append((path, Path(path).read_bytes()))
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
    return images


def print_results(results: list[dict[str, Any]]) -> None:
    for i, result in enumerate(results):
        if i:
            print()
        weights = "" if result["trained"] else "  (random weights: the labels mean nothing)"
        print(f"{result['image']}: {result['model']} version {result['version']}{weights}")
        rows = [[rank, c["index"], c["label"], f"{c['probability']:.4f}"]
                for rank, c in enumerate(result["classes"], 1)]  # fmt: skip
        print(render_table(["rank", "class", "label", "probability"], rows, align="rrlr"))


def main(args: argparse.Namespace) -> int:
    configure(args)  # --tls-*, --header: for every channel this command opens
    if args.top < 1:
        raise ClientError(f"--top must be 1 or more, got {args.top}")
    results = classify(
        args.server, args.model, read_images(args.images), args.top, per_request=args.per_request, timeout=args.timeout
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    parser.add_argument("--model", required=True, help="a classifier of the server's repository, e.g. resnet50")
    parser.add_argument("--top", type=int, default=5, help="classes to show per image (default: 5)")
    parser.add_argument("--server", default="localhost:8001", help="the server's gRPC address (default: %(default)s)")
    add_security_arguments(parser)
    parser.add_argument("--per-request", type=int, default=16, help="images per Classify call (default: 16)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default: 60)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
