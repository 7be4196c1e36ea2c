"""cnnserve.server.metrics: names, labels and buckets as exposed, and the /metrics endpoint's lifecycle.

Every test reads what Prometheus would read: the text exposition (generate_latest or HTTP),
parsed back with prometheus_client's own parser. Each test gets a fresh registry.
"""

from __future__ import annotations

import inspect
import socket
import urllib.request

import prometheus_client
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cnnserve.server.batching import BatchObserver
from cnnserve.server.metrics import Metrics

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def exposed(metrics: Metrics) -> Samples:
    return parse(generate_latest(metrics.registry).decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [v for lab, v in samples.get(name, []) if lab == labels]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_each_instance_has_its_own_registry_and_never_the_global_one() -> None:
    a, b = Metrics(), Metrics()
    a.observe_request("lenet5", "ModelInfer", "OK", 0.01)
    assert value(exposed(a), "cnnserve_requests_total", model="lenet5", rpc="ModelInfer", code="OK") == 1
    assert "cnnserve_requests_total" not in exposed(b)
    assert b"cnnserve_" not in generate_latest(prometheus_client.REGISTRY)


def test_a_given_registry_is_used(metrics: Metrics) -> None:
    registry = prometheus_client.CollectorRegistry()
    Metrics(registry).on_dequeue("lenet5", 0.001)
    assert registry.get_sample_value("cnnserve_queue_duration_seconds_count", {"model": "lenet5", "version": ""}) == 1


def test_request_duration_buckets_resolve_100us_to_10s(metrics: Metrics) -> None:
    for seconds in (0.00005, 0.00015, 3.0, 12.0):
        metrics.observe_request("lenet5", "ModelInfer", "OK", seconds)
    samples = exposed(metrics)
    buckets = {lab["le"]: v for lab, v in samples["cnnserve_request_duration_seconds_bucket"]
               if lab["model"] == "lenet5" and lab["rpc"] == "ModelInfer"}  # fmt: skip
    assert list(buckets) == ["0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05",
                             "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "10.0", "+Inf"]  # fmt: skip
    # Cumulative: 50 us in the first bucket, 150 us from 0.0002 on, 3 s from 5.0, 12 s only in +Inf.
    assert (buckets["0.0001"], buckets["0.0002"], buckets["2.0"], buckets["5.0"], buckets["10.0"]) == (1, 2, 2, 3, 3)
    assert buckets["+Inf"] == 4
    labels = {"model": "lenet5", "rpc": "ModelInfer"}
    assert value(samples, "cnnserve_request_duration_seconds_count", **labels) == 4
    assert value(samples, "cnnserve_request_duration_seconds_sum", **labels) == pytest.approx(15.0002)


def test_requests_are_counted_by_model_rpc_and_code(metrics: Metrics) -> None:
    metrics.observe_request("lenet5", "ModelInfer", "OK", 0.01)
    metrics.observe_request("lenet5", "ModelInfer", "OK", 0.02)
    metrics.observe_request("lenet5", "ModelInfer", "INVALID_ARGUMENT", 0.001)
    metrics.observe_request("", "ModelInfer", "NOT_FOUND", 0.001)
    samples = exposed(metrics)
    assert {(lab["model"], lab["rpc"], lab["code"]): v for lab, v in samples["cnnserve_requests_total"]} == {
        ("lenet5", "ModelInfer", "OK"): 2,
        ("lenet5", "ModelInfer", "INVALID_ARGUMENT"): 1,
        ("", "ModelInfer", "NOT_FOUND"): 1,
    }
    assert value(samples, "cnnserve_request_duration_seconds_count", model="lenet5", rpc="ModelInfer") == 3


def test_batcher_observations_carry_the_version_of_their_batcher(metrics: Metrics) -> None:
    observer = metrics.observer("2")  # what the model manager gives version 2's batcher
    observer.on_batch("resnet50", 16, 0.04)
    observer.on_batch("resnet50", 3, 0.02)
    observer.on_dequeue("resnet50", 0.0003)
    observer.on_copy("resnet50", 0.005)
    observer.on_drop("resnet50", "cancelled")
    observer.on_drop("resnet50", "cancelled")
    observer.on_drop("resnet50", "deadline")
    metrics.observer("3").on_batch("resnet50", 8, 0.03)  # the next version, rolling out beside it
    samples = exposed(metrics)
    sizes = {lab["le"]: v for lab, v in samples["cnnserve_batch_size_bucket"] if lab["version"] == "2"}
    assert list(sizes) == ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "256.0", "512.0", "+Inf"]
    assert (sizes["2.0"], sizes["4.0"], sizes["8.0"], sizes["16.0"], sizes["+Inf"]) == (0, 1, 1, 2, 2)
    v2 = {"model": "resnet50", "version": "2"}
    assert value(samples, "cnnserve_batch_size_sum", **v2) == 19
    assert value(samples, "cnnserve_batch_size_sum", model="resnet50", version="3") == 8
    assert value(samples, "cnnserve_compute_duration_seconds_count", **v2) == 2
    assert value(samples, "cnnserve_compute_duration_seconds_sum", **v2) == pytest.approx(0.06)
    assert value(samples, "cnnserve_queue_duration_seconds_bucket", **v2, le="0.0002") == 0
    assert value(samples, "cnnserve_copy_duration_seconds_count", **v2) == 1
    assert value(samples, "cnnserve_copy_duration_seconds_sum", **v2) == pytest.approx(0.005)
    assert value(samples, "cnnserve_queue_duration_seconds_bucket", **v2, le="0.0005") == 1
    assert {"0.0001", "10.0"} <= {lab["le"] for lab, _ in samples["cnnserve_compute_duration_seconds_bucket"]}
    assert value(samples, "cnnserve_dropped_requests_total", **v2, reason="cancelled") == 2
    assert value(samples, "cnnserve_dropped_requests_total", **v2, reason="deadline") == 1


def test_the_version_observer_has_the_batchers_observer_methods() -> None:
    observer = type(Metrics().observer("1"))
    for name in ("on_batch", "on_dequeue", "on_copy", "on_drop"):
        assert inspect.signature(getattr(observer, name)) == inspect.signature(getattr(BatchObserver, name)), name


def test_inflight_counts_while_inside_also_on_error(metrics: Metrics) -> None:
    with metrics.inflight("lenet5"), metrics.inflight("lenet5"):
        assert value(exposed(metrics), "cnnserve_inflight_requests", model="lenet5") == 2
    with pytest.raises(RuntimeError), metrics.inflight("lenet5"):
        raise RuntimeError("the handler failed")
    assert value(exposed(metrics), "cnnserve_inflight_requests", model="lenet5") == 0


def publish_lenet(metrics: Metrics, model: str = "lenet5", state: str = "ready") -> None:
    metrics.set_model_info(
        model=model,
        version="1",
        architecture="lenet5",
        weight_layers=5,
        parameters=61706,
        macs=416520,
        provider="CPUExecutionProvider",
        trained=True,
        state=state,
        batch_shapes="exact",
    )


def info(metrics: Metrics) -> list[tuple[dict[str, str], float]]:
    return exposed(metrics).get("cnnserve_model_info", [])


def test_model_info_labels(metrics: Metrics) -> None:
    publish_lenet(metrics)
    metrics.set_model_info(model="broken", version="", architecture="", weight_layers=0, parameters=0, macs=0,
                           provider="", trained=False, state="failed")  # fmt: skip
    assert sorted(info(metrics), key=lambda s: s[0]["model"]) == [
        ({"model": "broken", "version": "", "architecture": "", "weight_layers": "0", "parameters": "0", "macs": "0",
          "provider": "", "trained": "false", "state": "failed", "batch_shapes": ""}, 1.0),
        ({"model": "lenet5", "version": "1", "architecture": "lenet5", "weight_layers": "5", "parameters": "61706",
          "macs": "416520", "provider": "CPUExecutionProvider", "trained": "true", "state": "ready",
          "batch_shapes": "exact"}, 1.0),
    ]  # fmt: skip


def test_model_info_keeps_one_series_per_model(metrics: Metrics) -> None:
    publish_lenet(metrics, state="failed")
    publish_lenet(metrics, state="ready")
    assert [lab["state"] for lab, _ in info(metrics)] == ["ready"]


def test_remove_model_forgets_every_series_of_that_model_only(metrics: Metrics) -> None:
    for model in ("lenet5", "vgg16"):
        publish_lenet(metrics, model=model)
        metrics.observe_request(model, "ModelInfer", "OK", 0.01)
        metrics.on_batch(model, 4, 0.01)
        metrics.on_dequeue(model, 0.001)
        metrics.on_drop(model, "deadline")
        with metrics.inflight(model):
            pass
    metrics.remove_model("lenet5")
    metrics.remove_model("never-loaded")  # nothing to forget: no error
    models = {lab["model"] for samples in exposed(metrics).values() for lab, _ in samples if "model" in lab}
    assert models == {"vgg16"}
    assert len(info(metrics)) == 1


def test_series_come_back_after_a_model_is_removed_and_served_again(metrics: Metrics) -> None:
    # Children are cached on the request path; a removed model's cached children are detached
    # from the registry, and must not swallow the observations of the model served again.
    metrics.observe_request("lenet5", "ModelInfer", "OK", 0.01)
    metrics.on_batch("lenet5", 4, 0.01)
    metrics.remove_model("lenet5")
    metrics.observe_request("lenet5", "ModelInfer", "OK", 0.01)
    metrics.on_batch("lenet5", 2, 0.01)
    samples = exposed(metrics)
    assert value(samples, "cnnserve_requests_total", model="lenet5", rpc="ModelInfer", code="OK") == 1
    assert value(samples, "cnnserve_batch_size_sum", model="lenet5", version="") == 2


def test_remove_model_while_a_request_is_in_flight(metrics: Metrics) -> None:
    with metrics.inflight("lenet5"):
        metrics.remove_model("lenet5")
    # The late decrement does not bring the series back at -1.
    assert "cnnserve_inflight_requests" not in exposed(metrics)


# -- the /metrics endpoint -----------------------------------------------------------------------


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_http_endpoint_serves_parseable_text_and_closes_cleanly(metrics: Metrics) -> None:
    metrics.observe_request("lenet5", "ModelInfer", "OK", 0.002)
    server = metrics.start_http_server(0, "127.0.0.1")
    try:
        assert server.port != 0 and server.thread.is_alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            samples = parse(reply.read().decode())
        assert value(samples, "cnnserve_requests_total", model="lenet5", rpc="ModelInfer", code="OK") == 1
        assert value(samples, "cnnserve_request_duration_seconds_bucket", model="lenet5", rpc="ModelInfer",
                     le="0.0001") == 0  # fmt: skip
    finally:
        server.close()
    assert not server.thread.is_alive()
    assert refused(server.port)
    server.close()  # a second close does nothing
    # The port is free again: a restarted server gets it.
    with metrics.start_http_server(server.port, "127.0.0.1") as again:
        assert again.port == server.port
    assert refused(server.port)


def test_a_taken_port_fails_naming_it(metrics: Metrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot serve metrics on 127\.0\.0\.1:{port}: "):
            metrics.start_http_server(port, "127.0.0.1")
