"""The Grafana dashboard and its provisioning, read as files."""

from __future__ import annotations

import re

import yaml
from deployfiles import (
    DASHBOARD,
    ROOT,
    expressions,
    for_prometheus,
    load_compose,
    load_dashboard,
    mounts,
    variable_queries,
)
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cnnserve.server.metrics import Metrics


def exported_names() -> set[str]:
    """Every sample name the server's metrics module exposes, once each series has a value."""
    metrics = Metrics()
    metrics.observe_request("m", "ModelInfer", "OK", 0.01)
    metrics.on_batch("m", 2, 0.01)
    metrics.on_dequeue("m", 0.001)
    metrics.on_copy("m", 0.0001)
    metrics.on_drop("m", "cancelled")
    with metrics.inflight("m"):
        metrics.set_model_info(model="m", version="1", architecture="a", weight_layers=1, parameters=1, macs=1,
                               provider="CPUExecutionProvider", trained=False, state="ready")  # fmt: skip
        text = generate_latest(metrics.registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_expression_names_only_metrics_the_server_exports() -> None:
    dashboard = load_dashboard()
    exported = exported_names()
    queries = [expr for _, expr in expressions(dashboard)] + variable_queries(dashboard)
    used = {name for q in queries for name in re.findall(r"\bcnnserve_[a-z_]+", q)}
    assert used, "the dashboard queries no cnnserve metric"
    assert used <= exported, f"not exported by server/metrics.py: {sorted(used - exported)}"
    # The series a latency dashboard is built on are all on it.
    for family in ("request_duration_seconds_bucket", "queue_duration_seconds_sum", "compute_duration_seconds_sum",
                   "batch_size_bucket", "requests_total", "inflight_requests", "model_info"):  # fmt: skip
        assert f"cnnserve_{family}" in used, family


def test_the_panels_the_issue_asks_for_are_there() -> None:
    dashboard = load_dashboard()
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert titles == {"Request latency p50 / p95 / p99", "Throughput", "Errors by status code",
                      "Queue, copy and compute (mean)", "Batch sizes", "Mean batch size and requests in flight",
                      "Depth beside latency", "Requests by protocol and route",
                      "Latency by protocol p50 / p99"}  # fmt: skip
    quantiles = [e for t, e in expressions(dashboard) if t == "Request latency p50 / p95 / p99"]
    assert [re.findall(r"histogram_quantile\((0\.\d+)", e) for e in quantiles] == [["0.5"], ["0.95"], ["0.99"]]
    assert all("rate(" in e for e in quantiles)
    # HTTP's rpc label is its route, a path; gRPC's a method name: the protocols split on the slash.
    by_protocol = [e for t, e in expressions(dashboard) if t == "Latency by protocol p50 / p99"]
    assert sum('rpc=~"/.*"' in e for e in by_protocol) == 2 and sum('rpc!~"/.*"' in e for e in by_protocol) == 2
    table = next(p for p in dashboard["panels"] if p["title"] == "Depth beside latency")
    assert any("cnnserve_model_info" in t["expr"] for t in table["targets"])
    assert any("histogram_quantile(0.99" in t["expr"] for t in table["targets"])


def test_every_expression_becomes_plain_promql() -> None:
    for _, expr in expressions(load_dashboard()):
        assert "$" not in for_prometheus(expr, "resnet50")


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert (source["type"], source["url"], source["uid"]) == ("prometheus", "http://prometheus:9090", "prometheus")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "cnnserve.yml").read_text())["providers"]
    grafana = mounts(load_compose()["services"]["grafana"])
    assert grafana["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert (ROOT / "deploy/grafana/dashboards").resolve() == DASHBOARD.parent
    # Every panel and query uses the provisioned data source.
    dashboard = load_dashboard()
    panels = dashboard["panels"]
    uids = {p["datasource"]["uid"] for p in panels} | {t["datasource"]["uid"] for p in panels for t in p["targets"]}
    assert uids == {source["uid"]}
