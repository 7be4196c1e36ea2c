"""Tracing's settings: --trace-config as Triton takes it, the trace-setting API's values, and the
server's settings against each model's overrides."""

from __future__ import annotations

import pytest

from cnnserve.server.tracing.config import TraceSettings, TraceTable, from_entries


def test_entries_as_triton_takes_them() -> None:
    assert from_entries([]) == TraceSettings()
    s = from_entries(["rate=100", "level=timestamps", "count=5", "triton,file=/tmp/trace.json",
                      "triton,log-frequency=50"])  # fmt: skip
    assert (s.rate, s.level, s.count, s.mode, s.file, s.log_frequency) == (100, "TIMESTAMPS", 5, "triton",
                                                                           "/tmp/trace.json", 50)  # fmt: skip
    otel = from_entries(["mode=opentelemetry", "opentelemetry,url=http://collector:4318/v1/traces", "level=TIMESTAMPS",
                         "opentelemetry,resource=deployment=canary", "opentelemetry,resource=zone=b",
                         "opentelemetry,bsp_schedule_delay=200", "opentelemetry,bsp_max_queue_size=64",
                         "opentelemetry,bsp_max_export_batch_size=32"])  # fmt: skip
    assert (otel.mode, otel.url, otel.resource) == ("opentelemetry", "http://collector:4318/v1/traces",
                                                    ("deployment=canary", "zone=b"))  # fmt: skip
    assert (otel.bsp_schedule_delay, otel.bsp_max_queue_size, otel.bsp_max_export_batch_size) == (200, 64, 32)


@pytest.mark.parametrize(
    ("entries", "message"),
    [(["rate=often"], "--trace-config 'rate=often': rate takes an integer"),
     (["level=TENSORS"], "trace level: expected one of OFF, TIMESTAMPS, got 'TENSORS'"),
     (["mode=jaeger"], "trace mode: expected triton or opentelemetry, got 'jaeger'"),
     (["count=-2"], "trace count: expected an integer, -1 (no end) or more, got -2"),
     (["sample=5"], "--trace-config 'sample=5': expected SETTING=VALUE with SETTING one of level, rate, count, mode"),
     (["zipkin,url=x"], "--trace-config 'zipkin,url=x': 'zipkin' is not a trace mode (triton or opentelemetry)"),
     (["triton,url=x"], "--trace-config 'triton,url=x': expected triton,SETTING=VALUE with SETTING one of file, "
                        "log-frequency"),
     (["opentelemetry,bsp_schedule_delay=soon"],
      "--trace-config 'opentelemetry,bsp_schedule_delay=soon': bsp_schedule_delay takes an integer"),
     (["opentelemetry,bsp_max_queue_size=-1"], "trace bsp max queue size: expected an integer, 0 or more, got -1"),
     (["opentelemetry,resource=canary"], "trace resource 'canary': expected KEY=VALUE")],
)  # fmt: skip
def test_wrong_entries_are_named(entries: list[str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        from_entries(entries)
    assert str(caught.value) == message


def test_api_values_are_strings_as_tritonclient_sends_them() -> None:
    s = TraceSettings().changed({"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "10"})
    assert s.to_api() == {"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "10", "trace_file": "",
                          "log_frequency": "0", "trace_mode": "triton"}  # fmt: skip
    for given, message in (({"trace_rate": "x"}, "trace setting 'trace_rate': expected an integer, got 'x'"),
                           ({"trace_level": ["OFF", "TIMESTAMPS"]}, "trace setting 'trace_level': expected one of"),
                           ({"trace_colour": "red"}, "trace setting 'trace_colour' is not one of")):  # fmt: skip
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
            TraceSettings().changed(given)


def test_model_overrides_follow_tritons_rules() -> None:
    table = TraceTable(TraceSettings(level="TIMESTAMPS", rate=1000))
    # A model's first change copies the server's values for the rest.
    assert table.change({"trace_rate": "1"}, model="lenet5").rate == 1
    assert table.of("lenet5").level == "TIMESTAMPS" and table.of("resnet50").rate == 1000
    table.change({"trace_count": "5"})  # the server's own: the model keeps the copy it took
    assert table.of("").count == 5 and table.of("lenet5").count == -1
    # None: back to the server's value for that setting.
    assert table.change({"trace_count": None}, model="lenet5").count == 5
    # No setting named: the model's overrides are gone.
    assert table.change({}, model="lenet5") == table.of("lenet5") == table.of("")
    with pytest.raises(ValueError, match="the server's settings cannot be cleared"):
        table.change({"trace_rate": None})
    with pytest.raises(ValueError):
        table.change({"trace_rate": "-1"}, model="lenet5")
    assert "lenet5" not in table.models  # a refused change keeps nothing


def test_the_servers_own_settings_are_not_the_clients_to_change() -> None:
    table = TraceTable(TraceSettings(level="TIMESTAMPS", file="/var/log/trace.json", log_frequency=10))
    for given in ({"trace_file": "/etc/passwd"}, {"log_frequency": "1"}, {"trace_mode": "opentelemetry"}):
        for model in ("", "lenet5"):
            with pytest.raises(ValueError, match=f"trace setting '{next(iter(given))}' is the server's, set at start"):
                table.change(given, model)
    # Their current values, as tritonclient sends every setting back, are no change at all.
    assert table.change({"trace_file": "/var/log/trace.json", "log_frequency": 10, "trace_rate": "5"}).rate == 5
    assert table.of("").file == "/var/log/trace.json" and not table.models


def test_the_table_travels_to_another_worker_as_json() -> None:
    import json

    ours, theirs = TraceTable(TraceSettings(level="TIMESTAMPS")), TraceTable(TraceSettings(level="TIMESTAMPS"))
    ours.change({"trace_rate": "7"})
    ours.change({"trace_level": "OFF"}, model="resnet50")
    theirs.restore(json.loads(json.dumps(ours.state())))
    assert theirs.of("").rate == 7 and theirs.of("resnet50").level == "OFF" and theirs.of("lenet5").rate == 7
    assert theirs.active  # the server's level is still on
    with pytest.raises(ValueError):
        theirs.restore({"server": {"trace_rate": "fast"}, "models": {}})
    assert theirs.of("").rate == 7  # a bad table changes nothing


def test_opentelemetry_mode_is_checked_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnserve.server.settings import Settings, SettingsError
    from cnnserve.server.tracing import config

    assert Settings(trace_config=("mode=opentelemetry",)).trace_config == ("mode=opentelemetry",)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "zipkin")
    with pytest.raises(
        SettingsError, match="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL 'zipkin': expected http/protobuf or grpc"
    ):
        Settings(trace_config=("mode=opentelemetry",))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    real = config.importlib.util.find_spec
    # An install without the gRPC exporter: said at start, with what to install.
    monkeypatch.setattr(config.importlib.util, "find_spec",
                        lambda name: None if name.endswith("otlp.proto.grpc") else real(name))  # fmt: skip
    with pytest.raises(SettingsError, match=r"needs opentelemetry.exporter.otlp.proto.grpc \(pip install "
                                            r"opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc\)"):  # fmt: skip
        Settings(trace_config=("mode=opentelemetry",))
    assert Settings(trace_config=("level=OFF",)).trace_config == ("level=OFF",)  # the file mode needs none of it
