"""A lone caller and a crowd, against a bare echo and a server without a batcher, in one run.

    python -m bench.vs_nobatcher [--seconds 8]

For each model, three servers run side by side and take turns case by case (same client, same
request): the bare grpc.aio echo of the same bytes (``bench.echo``), a minimal KServe-style
server that runs ONNX Runtime directly in its handler (``bench.echo --model-path``: no batcher,
no worker thread), and cnnserve. Cases: lenet5 at 1 and 32 callers, resnet50 at 1 and 8.
Targets on two cores (issue 18): one caller p50 within +0.25 ms of the echo and no slower than
the no-batcher server; 32 callers at least 0.75x the echo; resnet50 at 1 and 8 callers at least
level with the no-batcher server.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np

from bench.common import ROOT, LoadReport, closed_loop, ensure_exported, infer_request, progress, running_server
from bench.vs_echo import running_bare
from cnnserve.repository import load_entry

CASES = {"lenet5": (1, 32), "resnet50": (1, 8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("server_args", nargs="*", help="extra `cnnserve serve` flags, after --")
    args = parser.parse_args()
    ensure_exported(args.repo, *CASES)
    results: dict[tuple[str, int], dict[str, LoadReport]] = {}
    for model, callers in CASES.items():
        config = load_entry(args.repo / model)
        spec = config.inputs[0]
        x = np.random.default_rng(0).random((1, *spec.shape), dtype=np.float32)
        request = infer_request(model, spec.name, x)
        classes = math.prod(config.outputs[0].shape)
        with contextlib.ExitStack() as stack:
            servers = {
                "echo": stack.enter_context(running_bare("--reply-floats", str(classes))),
                "no batcher": stack.enter_context(running_bare("--model-path", str(config.onnx_path))),
                "cnnserve": stack.enter_context(running_server(args.repo, "--model", model, *args.server_args)),
            }
            for n in callers:
                for name, address in servers.items():
                    progress(f"{model}, {n} caller(s): {name}")
                    results[model, n] = results.get((model, n), {})
                    results[model, n][name] = closed_loop(address, request, concurrency=n, seconds=args.seconds)

    print(f"{'case':<22}{'':>12}{'echo':>10}{'no batcher':>12}{'cnnserve':>10}{'/echo':>8}{'/no batcher':>12}")
    for (model, n), by in results.items():
        rates = {name: r.requests_per_second for name, r in by.items()}
        p50 = {name: r.percentile(50) * 1e3 for name, r in by.items()}
        label = f"{model}, {n} caller{'s' if n > 1 else ''}"
        print(f"{label:<22}{'requests/s':>12}{rates['echo']:>10,.0f}{rates['no batcher']:>12,.0f}"
              f"{rates['cnnserve']:>10,.0f}{rates['cnnserve'] / rates['echo']:>8.2f}"
              f"{rates['cnnserve'] / rates['no batcher']:>12.2f}")  # fmt: skip
        print(f"{'':<22}{'p50 ms':>12}{p50['echo']:>10.3f}{p50['no batcher']:>12.3f}{p50['cnnserve']:>10.3f}"
              f"{p50['cnnserve'] - p50['echo']:>+8.3f}{p50['cnnserve'] - p50['no batcher']:>+12.3f}")  # fmt: skip
    print("ratios: cnnserve's requests/s over each; p50 differences in ms")


if __name__ == "__main__":
    main()
