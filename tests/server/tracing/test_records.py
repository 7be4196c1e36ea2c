"""Which requests are traced, what a trace holds, and Triton's JSON trace file."""

from __future__ import annotations

import json

from cnnserve.server.tracing import record
from cnnserve.server.tracing.config import TraceSettings, TraceTable
from cnnserve.server.tracing.record import Batch, Parent, Trace
from cnnserve.server.tracing.sampler import Sampler
from cnnserve.server.tracing.triton_file import TritonFile


def test_rate_and_count_per_model() -> None:
    table = TraceTable(TraceSettings(level="TIMESTAMPS", rate=3, count=2))
    sampler = Sampler(table)
    taken = [sampler.take("lenet5") for _ in range(12)]
    assert taken == [False, False, True, False, False, True] + [False] * 6  # every third, two in all
    assert [sampler.take("resnet50") for _ in range(3)] == [False, False, True]  # its own counting
    assert sampler.take("lenet5", propagated=True)  # a caller's trace continues whatever the count
    table.change({"trace_level": "OFF"}, model="resnet50")
    assert not sampler.take("resnet50", propagated=True)  # but not where tracing is off
    sampler.reset()
    assert [sampler.take("lenet5") for _ in range(3)] == [False, False, True]  # a new count


def test_rate_zero_traces_only_propagated_requests() -> None:
    sampler = Sampler(TraceTable(TraceSettings(level="TIMESTAMPS", rate=0)))
    assert not any(sampler.take("lenet5") for _ in range(100))
    assert sampler.take("lenet5", propagated=True)


def test_a_trace_holds_its_batchs_stamps_in_time_order() -> None:
    trace = Trace("lenet5", "1", "grpc")
    trace.stamp(record.REQUEST_START, 100)
    trace.stamp(record.QUEUE_START, 110)
    batch = Batch(7, size=4, requests=2)
    trace.runs.append((batch, 3))
    for name, ns in ((record.COMPUTE_START, 130), (record.COMPUTE_INPUT_END, 140),
                     (record.COMPUTE_OUTPUT_START, 170), (record.COMPUTE_END, 180)):  # fmt: skip
        batch.stamp(name, ns)
    trace.stamp(record.REQUEST_END, 200)
    names = [name for name, _ in trace.timestamps()]
    assert names == [n for n in record.ORDER if n in names] and len(names) == 7
    assert (trace.batch, trace.position) == (batch, 3)
    assert Trace("m", "1", "http").id != Trace("m", "1", "http").id


def test_the_triton_file_and_its_log_frequency(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def traced(n: int) -> Trace:
        t = Trace("lenet5", "1", "http", request_id=f"r{n}")
        t.stamp(record.REQUEST_START, n)
        t.stamp(record.REQUEST_END, n + 1)
        return t

    whole = TritonFile(str(tmp_path / "trace.json"))
    assert all(whole.add(traced(n)) is None for n in range(3))
    path, text = whole.close()  # type: ignore[misc]
    assert path == tmp_path / "trace.json"
    document = json.loads(text)
    assert document[0] == {
        "id": document[0]["id"],
        "model_name": "lenet5",
        "model_version": 1,
        "request_id": "r0",
        "protocol": "http",
    }
    assert document[1]["timestamps"] == [{"name": "REQUEST_START", "ns": 0}, {"name": "REQUEST_END", "ns": 1}]
    assert len(document) == 6 and whole.close() is None

    rolling = TritonFile(str(tmp_path / "trace.json"), log_frequency=2)
    due = [rolling.add(traced(n)) for n in range(5)]
    assert [d[0].name for d in due if d is not None] == ["trace.json.0", "trace.json.1"]
    last = rolling.close()
    assert last is not None and last[0].name == "trace.json.2" and len(json.loads(last[1])) == 2


def test_traceparent_as_w3c_reads_it() -> None:
    parent = Parent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert parent == Parent(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, sampled=True)
    assert parent.trace_hex == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert not Parent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").sampled  # type: ignore[union-attr]
    # A later version may add fields after the flags; version 00 may not.
    assert Parent.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") is not None
    for wrong in ("", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                  "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
                  "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
                  "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                  "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
                  "not a traceparent at all, no, not at all, not at all!"):  # fmt: skip
        assert Parent.parse(wrong) is None, wrong
