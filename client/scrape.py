"""Reading a server's Prometheus endpoint: every sample by name, and sums over labels."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from cnnserve.client.channel import ClientError

Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value)


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
