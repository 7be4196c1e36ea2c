"""What the client subcommands (classify, bench, compare) share: one-line errors, the channel,
and reading the server's Prometheus endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from prometheus_client.parser import text_string_to_metric_families

MIB = 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]

Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value)


class ClientError(Exception):
    """A failure the command reports in one line (exit status 1)."""


def rpc_error(exc: grpc.RpcError, server: str) -> ClientError:
    """One line for a failed call; a server that is not there is said so plainly."""
    code, details = exc.code(), exc.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "refused" in details.lower()):
        return ClientError(f"cannot reach a server at {server} (is `cnnserve serve` running?): {details}")
    return ClientError(f"{code.name}: {details}")


@contextmanager
def channel(server: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server, options=CHANNEL_OPTIONS) as ch:
        yield ch


def metrics_address(server: str, metrics: str | None) -> str:
    """``metrics`` if given, else the gRPC host on Triton's metrics port 8002."""
    if metrics:
        return metrics
    host = server.rsplit(":", 1)[0] if ":" in server else server
    return f"{host}:8002"


def scrape(address: str, timeout: float = 10.0) -> Samples:
    """Every sample of ``http://address/metrics``; ClientError when it cannot be read."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as reply:
            text = reply.read().decode()
    except (OSError, urllib.error.URLError) as exc:
        url = f"http://{address}/metrics"
        raise ClientError(f"cannot read metrics at {url} ({exc}); give --metrics HOST:PORT") from None
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items()))
