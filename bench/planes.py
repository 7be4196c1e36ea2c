"""The 48 planes in process: the C code against the pure-Python reference, and threads.

    python -m bench.planes [--positions 20] [--moves 150] [--seconds 3] [--threads 2]

Positions of ``--moves`` random legal moves (the issue's yardstick: 150), each measured side by
side in one run:

1. the pure-Python reference (tests/support/goreference/, what the server ran before the C code);
2. the C planes (``cnnserve.go.features.planes``), one thread;
3. the C planes from ``--threads`` threads at once (the GIL is released while they run);
4. what a Policy call does before the network: parse the SGF record, replay it, compute the
   planes; one thread, then ``--threads``.

Prints microseconds a position, positions per second and the ratios (C / reference, N threads /
one thread). Timings vary with the machine's load; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable

from bench.common import ROOT, progress
from cnnserve.client.bench import sample_record
from cnnserve.go import features, position

sys.path.append(str(ROOT / "tests" / "support"))  # the reference implementation lives with the tests
from goreference import planes as reference


def rate(work: Callable[[int], object], count: int, seconds: float, threads: int) -> float:
    """Calls of ``work(i)`` a second, from ``threads`` threads, each cycling over ``count`` items."""
    done = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def loop(slot: int) -> None:
        start.wait()
        i = slot
        while not stop.is_set():
            work(i % count)
            i += 1
            done[slot] += 1

    workers = [threading.Thread(target=loop, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=20, help="random games (seeds 0..N-1)")
    parser.add_argument("--moves", type=int, default=150, help="moves a game (default: 150)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    records = [sample_record(args.moves, seed) for seed in range(args.positions)]
    where = [position.from_sgf(r) for r in records]
    for w in where:  # the same planes, or the comparison means nothing
        assert (features.planes(w.board, w.to_move) == reference.planes(w.board, w.to_move)).all()
    progress(f"{args.positions} positions of {args.moves} random moves; C and reference planes agree")

    def fast(i: int) -> object:
        return features.planes(where[i].board, where[i].to_move)

    def slow(i: int) -> object:
        return reference.planes(where[i].board, where[i].to_move)

    def replay(i: int) -> object:
        w = position.from_sgf(records[i])
        return features.planes(w.board, w.to_move)

    n, t = args.positions, args.threads
    rows = [
        ("reference planes (pure Python), 1 thread", rate(slow, n, args.seconds, 1)),
        ("C planes, 1 thread", rate(fast, n, args.seconds, 1)),
        (f"C planes, {t} threads", rate(fast, n, args.seconds, t)),
        ("SGF parse + replay + C planes, 1 thread", rate(replay, n, args.seconds, 1)),
        (f"SGF parse + replay + C planes, {t} threads", rate(replay, n, args.seconds, t)),
    ]
    for name, value in rows:
        progress(f"  {name}: {value:,.0f}/s")
    print(f"{args.positions} positions of {args.moves} random legal moves, {args.seconds:g} s a measurement")
    for name, value in rows:
        print(f"{name:<46} {1e6 / value:9.1f} us  {value:12,.0f} positions/s")
    (_, ref), (_, one), (_, many), (_, sgf_one), (_, sgf_many) = rows
    print(f"C / reference, 1 thread: {one / ref:.1f}x")
    print(f"C planes, {t} threads / 1 thread: {many / one:.2f}x")
    print(f"SGF + planes, {t} threads / 1 thread: {sgf_many / sgf_one:.2f}x")


if __name__ == "__main__":
    main()
