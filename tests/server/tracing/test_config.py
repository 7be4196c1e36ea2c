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
    with pytest.raises(ValueError, match="trace mode 'opentelemetry' is not available yet"):
        from_entries(["mode=opentelemetry", "opentelemetry,url=http://collector:4318/v1/traces"])


@pytest.mark.parametrize(
    ("entries", "message"),
    [(["rate=often"], "--trace-config 'rate=often': rate takes an integer"),
     (["level=TENSORS"], "trace level: expected one of OFF, TIMESTAMPS, got 'TENSORS'"),
     (["mode=jaeger"], "trace mode: expected triton or opentelemetry, got 'jaeger'"),
     (["count=-2"], "trace count: expected an integer, -1 (no end) or more, got -2"),
     (["sample=5"], "--trace-config 'sample=5': expected SETTING=VALUE with SETTING one of level, rate, count, mode"),
     (["zipkin,url=x"], "--trace-config 'zipkin,url=x': 'zipkin' is not a trace mode (triton or opentelemetry)"),
     (["triton,url=x"], "--trace-config 'triton,url=x': expected triton,SETTING=VALUE with SETTING one of file, "
                        "log-frequency")],
)  # fmt: skip
def test_wrong_entries_are_named(entries: list[str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        from_entries(entries)
    assert str(caught.value) == message


def test_api_values_are_strings_as_tritonclient_sends_them() -> None:
    s = TraceSettings().changed({"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "10"})
    assert s.to_api() == {"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "10", "trace_file": "",
                          "log_frequency": "0"}  # fmt: skip
    for given, message in (({"trace_rate": "x"}, "trace setting 'trace_rate': expected an integer, got 'x'"),
                           ({"trace_level": ["OFF", "TIMESTAMPS"]}, "trace setting 'trace_level': expected one of"),
                           ({"trace_mode": "triton"}, "trace setting 'trace_mode' is not one of")):  # fmt: skip
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
