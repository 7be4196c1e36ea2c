"""A version swap under load: how long ``load_model`` takes for a new version, and what the
callers see meanwhile, in one run.

    python -m bench.vs_rollout [--model resnet50] [--callers 8] [--seconds 6] [--swaps 2]

cnnserve runs in ``explicit`` model control over a repository of its own (a copy of the model's
entry); ``--callers`` closed-loop callers send V2 requests without pause. Each swap adds the next
version folder (a copy of the first: the same weights, so the load is all that differs) and calls
RepositoryModelLoad, which returns once the new version is warmed up and serving. Printed: each
swap's load call in seconds, requests/s before, during and after the swap (and their ratios), and
the failed requests (which must be none). On a machine with few cores the new version's warm-up
competes with the serving one for them: the "during" ratio is what a rollout costs here.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as tc

from bench.common import ROOT, ensure_exported, progress, running_server
from cnnserve.repository import load_entry


class Callers:
    """Closed-loop callers; each reply's arrival time and version kept."""

    def __init__(self, address: str, model: str, x: np.ndarray, count: int) -> None:
        self.address, self.model, self.x = address, model, x
        self.replies: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(count)]

    def _run(self) -> None:
        with tc.InferenceServerClient(self.address) as client:
            tensor = tc.InferInput("input", list(self.x.shape), "FP32")
            tensor.set_data_from_numpy(self.x)
            while not self.stop.is_set():
                try:
                    result = client.infer(self.model, [tensor], client_timeout=120)
                except Exception as exc:  # every failure counts, whatever its kind
                    self.failures.append(str(exc))
                    continue
                self.replies.append((time.monotonic(), result.get_response().model_version))

    def rate(self, start: float, end: float) -> float:
        return sum(start <= t < end for t, _ in self.replies) / (end - start)

    def __enter__(self) -> Callers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured before and after each swap")
    parser.add_argument("--swaps", type=int, default=2)
    args = parser.parse_args()
    ensure_exported(args.repo, args.model)
    config = load_entry(args.repo / args.model)
    x = np.random.default_rng(0).random((1, *config.inputs[0].shape), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder)
        shutil.copytree(args.repo / args.model, repo / args.model)
        first = repo / args.model / str(config.version)
        rows = []
        with (
            running_server(repo, "--model-control-mode", "explicit", "--load-model", args.model) as address,
            Callers(address, args.model, x, args.callers) as callers,
            tc.InferenceServerClient(address) as control,
        ):
            time.sleep(2.0)  # warm-up
            for swap in range(1, args.swaps + 1):
                version = config.version + swap
                shutil.copytree(first, repo / args.model / str(version))
                before_start = time.monotonic()
                time.sleep(args.seconds)
                progress(f"swap {swap}/{args.swaps}: loading version {version}")
                called = time.monotonic()
                control.load_model(args.model)
                returned = time.monotonic()
                time.sleep(args.seconds)
                after_end = time.monotonic()
                first_new = min((t for t, v in callers.replies if v == str(version)), default=float("nan"))
                rows.append((swap, version, returned - called, first_new - called,
                             callers.rate(before_start, called), callers.rate(called, returned),
                             callers.rate(returned, after_end)))  # fmt: skip
    print(f"{args.model}: {args.callers} callers, version swaps by RepositoryModelLoad")
    print(f"{'swap':>4} {'version':>7} {'load s':>8} {'1st new s':>9} {'before/s':>9} {'during/s':>9} "
          f"{'after/s':>8} {'during/before':>13}")  # fmt: skip
    for swap, version, load_s, first_s, before, during, after in rows:
        print(f"{swap:>4} {version:>7} {load_s:>8.2f} {first_s:>9.2f} {before:>9.1f} {during:>9.1f} {after:>8.1f} "
              f"{during / before:>13.2f}")  # fmt: skip
    print(
        f"median load call {statistics.median(r[2] for r in rows):.2f} s; "
        f"failed requests: {len(callers.failures)}" + (f" (first: {callers.failures[0]})" if callers.failures else "")
    )


if __name__ == "__main__":
    main()
