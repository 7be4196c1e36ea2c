"""One process against several: cnnserve with 1 and N workers beside a bare echo in 1 and N
processes on one port, taking turns, in one run.

    python -m bench.vs_workers [--workers 2] [--callers 32] [--seconds 8] [--rounds 2]

lenet5, float32 images as raw V2 bytes, ``--callers`` closed-loop callers spread over as many
connections (the kernel spreads connections, not calls, over processes sharing a port). On a
machine with few cores the client's own process competes with the servers: read the ratios
against the echo's, which pays the same.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from bench.common import ROOT, LoadReport, closed_loop, ensure_exported, infer_request, progress, running_server
from bench.vs_echo import running_bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ensure_exported(args.repo, "lenet5")
    x = np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)
    request = infer_request("lenet5", "input", x)
    n = args.workers
    results: dict[str, list[LoadReport]] = {}
    with contextlib.ExitStack() as stack:
        servers = {
            "echo, 1 process": stack.enter_context(running_bare("--reply-floats", "10")),
            f"echo, {n} processes": stack.enter_context(running_bare("--reply-floats", "10", processes=n)),
            "cnnserve, 1 worker": stack.enter_context(running_server(args.repo, "--model", "lenet5")),
            f"cnnserve, {n} workers": stack.enter_context(
                running_server(args.repo, "--model", "lenet5", "--workers", str(n))
            ),
        }
        for round_ in range(args.rounds):
            for name, address in servers.items():
                progress(f"round {round_ + 1}/{args.rounds}: {name}, {args.callers} callers")
                results.setdefault(name, []).append(
                    closed_loop(
                        address, request, concurrency=args.callers, seconds=args.seconds, connections=args.callers
                    )
                )

    best = {name: max(r.requests_per_second for r in reports) for name, reports in results.items()}
    one_echo = best["echo, 1 process"]
    print(f"lenet5, {args.callers} callers; requests/s, best of {args.rounds} rounds")
    print(f"{'':24}{'requests/s':>12}{'p50 ms':>10}{'/echo x1':>10}")
    for name, reports in results.items():
        p50 = min(r.percentile(50) for r in reports) * 1e3
        print(f"{name:<24}{best[name]:>12,.0f}{p50:>10.2f}{best[name] / one_echo:>10.2f}")
    print(f"cnnserve {n} workers / 1 worker: {best[f'cnnserve, {n} workers'] / best['cnnserve, 1 worker']:.2f}; "
          f"echo {n} processes / 1: {best[f'echo, {n} processes'] / one_echo:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
