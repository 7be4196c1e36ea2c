"""Throughput through nginx against direct, on loopback, in one run.

    python -m bench.vs_nginx [--callers 32] [--connections 4] [--seconds 8] [--rounds 2] [--nginx-workers 1]

lenet5, one float32 image per request as raw V2 bytes, ``--callers`` closed-loop callers over
``--connections`` TCP connections, the same for every step. The steps take turns in each round:
one replica direct; the same replica through nginx; three replicas through nginx; the same three
direct, with the client's own round_robin over them (an ``ipv4:`` target, as ``dns:///`` over a
headless Service would give). nginx (Debian's /usr/sbin/nginx, or any on PATH) runs the shipped
deploy/nginx/cnnserve.conf with loopback ports and the replicas' addresses, as
tests/deploy/test_nginx.py does, in a folder of its own. Its CPU time per 1000 requests is read
from /proc.

Everything shares the machine: on two cores the client process, nginx and three servers compete
for the same two, so three replicas cannot triple anything; the ratios against the direct replica
say what the extra hop costs (latency, and nginx's CPU taken from the servers), not how far
replicas would scale on machines of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bench.common import ROOT, LoadReport, ensure_exported, free_port, infer_request, progress, serving_with_http
from cnnserve.client.bench import Target
from cnnserve.client.loadgen import run_load

CONFIG = ROOT / "deploy" / "nginx" / "cnnserve.conf"


def site_config(grpc_port: int, http_port: int, grpc: list[str], http: list[str]) -> str:
    """The shipped configuration with loopback listeners and these upstreams in place of compose's
    service name (the parameters of its `server` lines kept)."""
    text = CONFIG.read_text()
    for old, new in (("listen 8001 http2;", f"listen 127.0.0.1:{grpc_port} http2;"),
                     ("listen 8000;", f"listen 127.0.0.1:{http_port};")):  # fmt: skip
        if text.count(old) != 1:
            raise RuntimeError(f"{CONFIG} no longer holds {old!r} once")
        text = text.replace(old, new)
    for port, addresses in (("8001", grpc), ("8000", http)):
        (line,) = re.findall(rf"^ *server cnnserve:{port} resolve\b.*$", text, re.MULTILINE)
        params = line.split(" resolve", 1)[1].rstrip(";")
        text = text.replace(line, "\n".join(f"    server {address}{params};" for address in addresses))
    return text


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")  # Debian's, off some PATHs
    if found is None:
        raise SystemExit("nginx is not installed: `make system-packages` installs Debian's")
    return found


@contextlib.contextmanager
def running_nginx(replicas: list[tuple[str, str]], workers: int) -> Iterator[tuple[str, Callable[[], float]]]:
    """nginx in front of ``replicas`` ((gRPC, HTTP) addresses); yields its gRPC address and a
    function giving the CPU seconds its processes have used so far."""
    with tempfile.TemporaryDirectory(prefix="cnnserve-nginx-") as tmp:
        folder = Path(tmp)
        grpc_port, http_port = free_port(), free_port()
        (folder / "cnnserve.conf").write_text(
            site_config(grpc_port, http_port, [g for g, _ in replicas], [h for _, h in replicas])
        )
        temp = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))  # fmt: skip
        (folder / "nginx.conf").write_text(
            f"worker_processes {workers};\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} warn;\n"
            f"events {{\n    worker_connections 4096;\n}}\n"
            f"http {{\n    access_log off;\n{temp}    include {folder / 'cnnserve.conf'};\n}}\n"
        )
        command = [nginx_binary(), "-p", str(folder), "-c", str(folder / "nginx.conf")]
        subprocess.run([*command, "-t", "-q"], check=True)
        process = subprocess.Popen([*command, "-g", "daemon off;"])
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", grpc_port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start: {(folder / 'error.log').read_text()}") from None
                    time.sleep(0.05)
            yield f"127.0.0.1:{grpc_port}", lambda: cpu_seconds(process.pid)
        finally:
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=30)


def cpu_seconds(master: int) -> float:
    """User and system CPU time of nginx's master and its (live) workers, from /proc."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return float("nan")
    ticks = 0
    for pid in [str(master), *children]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(address: str, target: Target, args: argparse.Namespace,
            cpu: Callable[[], float] | None) -> tuple[LoadReport, float | None]:  # fmt: skip
    """One closed-loop step against ``address``, and nginx's CPU seconds per answered request while
    it was measured (the warm-up's left out), when ``cpu`` reads them."""
    started: list[float] = []
    report = run_load(address, target.make_call, concurrency=args.callers, duration=args.seconds, warmup=1.0,
                      connections=args.connections, on_start=lambda: started.append(cpu() if cpu else 0.0))  # fmt: skip
    if report.failed:
        raise RuntimeError(f"{report.failed} requests failed: {report.error_messages}")
    if cpu is None or not started:
        return report, None
    return report, (cpu() - started[0]) / max(report.ok, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT / "exported")
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nginx-workers", type=int, default=1)
    args = parser.parse_args()
    ensure_exported(args.repo, "lenet5")
    x = np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)
    target = Target("lenet5", "v2", 1, infer_request("lenet5", "input", x))
    results: dict[str, list[LoadReport]] = {}
    nginx_cpu: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        progress("starting three replicas and two nginx ...")
        replicas = [stack.enter_context(serving_with_http(args.repo, "--model", "lenet5")) for _ in range(3)]
        one, one_cpu = stack.enter_context(running_nginx(replicas[:1], args.nginx_workers))
        three, three_cpu = stack.enter_context(running_nginx(replicas, args.nginx_workers))
        steps: dict[str, tuple[str, Callable[[], float] | None]] = {
            "1 replica, direct": (replicas[0][0], None),
            "1 replica, via nginx": (one, one_cpu),
            "3 replicas, via nginx": (three, three_cpu),
            "3 replicas, round_robin": ("ipv4:" + ",".join(g for g, _ in replicas), None),
        }
        for round_ in range(args.rounds):
            for name, (address, cpu) in steps.items():
                progress(f"round {round_ + 1}/{args.rounds}: {name}, {args.callers} callers")
                report, cpu_per_request = measure(address, target, args, cpu)
                results.setdefault(name, []).append(report)
                if cpu_per_request is not None:
                    nginx_cpu.setdefault(name, []).append(cpu_per_request * 1e6)  # us a request = ms a thousand

    best = {name: max(r.requests_per_second for r in reports) for name, reports in results.items()}
    direct = best["1 replica, direct"]
    print(f"lenet5, {args.callers} callers over {args.connections} connections, {os.cpu_count()} cores, nginx "
          f"workers {args.nginx_workers}; requests/s, best of {args.rounds} rounds")  # fmt: skip
    print(f"{'':26}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'/direct':>10}{'nginx CPU ms/1k':>17}")
    for name, reports in results.items():
        p50 = min(r.percentile(50) for r in reports) * 1e3
        p99 = min(r.percentile(99) for r in reports) * 1e3
        spent = f"{min(nginx_cpu[name]):.0f}" if name in nginx_cpu else "-"
        print(f"{name:<26}{best[name]:>12,.0f}{p50:>10.2f}{p99:>10.2f}{best[name] / direct:>10.2f}{spent:>17}")


if __name__ == "__main__":
    main()
