"""cnnserve.server.settings: defaults, CNNSERVE_* variables, flags, precedence, and the error messages."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from cnnserve.server.settings import MIB, OPTIONS, Settings, SettingsError, add_arguments


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnnserve serve")
    add_arguments(p)
    return p


def load(*flags: str, **env: str) -> Settings:
    return Settings.from_args(parser().parse_args(flags), environ=env)


def test_defaults() -> None:
    s = Settings()
    assert (s.repo, s.host, s.grpc_port, s.metrics_port, s.device) == ("exported", "0.0.0.0", 8001, 8002, "auto")
    assert (s.intra_op_threads, s.inter_op_threads, s.instances, s.ort_spinning) == (0, 0, None, "off")
    assert (s.max_batch_size, s.max_queue_delay_us, s.max_queue_size) == (None, None, None)
    assert s.max_message_bytes == 64 * 1024 * 1024
    assert (s.max_queue_bytes, s.max_concurrent_rpcs) == (1024 * MIB, 1024)
    assert (s.max_images_per_request, s.max_image_pixels, s.decode_threads) == (64, 50_000_000, 0)
    assert (s.grace_seconds, s.log_level, s.models) == (10.0, "info", ())
    assert s.metrics_enabled and s.batching_overrides() == {}
    assert load() == Settings.from_env({}) == s


ENV = [
    ("CNNSERVE_REPO", "/models", "repo", "/models"),
    ("CNNSERVE_HOST", "127.0.0.1", "host", "127.0.0.1"),
    ("CNNSERVE_GRPC_PORT", "9001", "grpc_port", 9001),
    ("CNNSERVE_METRICS_PORT", "-1", "metrics_port", -1),
    ("CNNSERVE_DEVICE", "CUDA", "device", "cuda"),
    ("CNNSERVE_INTRA_OP_THREADS", "4", "intra_op_threads", 4),
    ("CNNSERVE_INTER_OP_THREADS", "2", "inter_op_threads", 2),
    ("CNNSERVE_HTTP_PORT", "8080", "http_port", 8080),
    ("CNNSERVE_HTTP_PORT", "-1", "http_port", -1),
    ("CNNSERVE_WORKERS", "3", "workers", 3),
    ("CNNSERVE_WORKERS", "auto", "workers", None),
    ("CNNSERVE_WORKER_TIMEOUT", "2.5", "worker_timeout", 2.5),
    ("CNNSERVE_WORKER_TIMEOUT", "0", "worker_timeout", 0.0),
    ("CNNSERVE_INSTANCES", "4", "instances", 4),
    ("CNNSERVE_INSTANCES", "Auto", "instances", None),
    ("CNNSERVE_PREFERRED_BATCH_SIZES", "1, 16,64", "preferred_batch_sizes", (1, 16, 64)),
    ("CNNSERVE_PREFERRED_BATCH_SIZES", "None", "preferred_batch_sizes", ()),
    ("CNNSERVE_TRACE_CONFIG", "rate=10; count=5", "trace_config", ("rate=10", "count=5")),
    ("CNNSERVE_BATCH_SHAPES", "Padded", "batch_shapes", "padded"),
    ("CNNSERVE_CUDA_CONV_ALGO_SEARCH", "HEURISTIC", "cuda_conv_algo_search", "heuristic"),
    ("CNNSERVE_CUDA_MEMORY_LIMIT", "8GiB", "cuda_memory_limit", 8 * 1024 * MIB),
    ("CNNSERVE_CUDA_ARENA_STRATEGY", "next_power_of_two", "cuda_arena_strategy", "next_power_of_two"),
    ("CNNSERVE_CUDA_COPY_STREAM", "separate", "cuda_copy_stream", "separate"),
    ("CNNSERVE_CUDA_TF32", "on", "cuda_tf32", "on"),
    ("CNNSERVE_CUDA_GRAPHS", "ON", "cuda_graphs", "on"),
    ("CNNSERVE_ORT_SPINNING", "On", "ort_spinning", "on"),
    ("CNNSERVE_MAX_BATCH_SIZE", "16", "max_batch_size", 16),
    ("CNNSERVE_MAX_QUEUE_DELAY_US", "0", "max_queue_delay_us", 0),
    ("CNNSERVE_MAX_QUEUE_SIZE", "100", "max_queue_size", 100),
    ("CNNSERVE_INLINE_COMPUTE_US", "0", "inline_compute_us", 0),
    ("CNNSERVE_MAX_QUEUE_BYTES", "256MiB", "max_queue_bytes", 256 * MIB),
    ("CNNSERVE_MAX_CONCURRENT_RPCS", "0", "max_concurrent_rpcs", 0),
    ("CNNSERVE_MAX_MESSAGE_BYTES", "128MiB", "max_message_bytes", 128 * MIB),
    ("CNNSERVE_MAX_IMAGES_PER_REQUEST", "8", "max_images_per_request", 8),
    ("CNNSERVE_MAX_IMAGE_PIXELS", "1_000_000", "max_image_pixels", 1_000_000),
    ("CNNSERVE_DECODE_THREADS", "3", "decode_threads", 3),
    ("CNNSERVE_GRACE_SECONDS", "2.5", "grace_seconds", 2.5),
    ("CNNSERVE_DRAIN_SECONDS", "1.5", "drain_seconds", 1.5),
    ("CNNSERVE_LOG_LEVEL", " Debug ", "log_level", "debug"),
    ("CNNSERVE_MODELS", "lenet5, resnet50,", "models", ("lenet5", "resnet50")),
    ("CNNSERVE_MODEL_CONTROL_MODE", " Poll", "model_control_mode", "poll"),
    ("CNNSERVE_LOAD_MODELS", "lenet5,*", "load_models", ("lenet5", "*")),
    ("CNNSERVE_REPOSITORY_POLL_SECONDS", "0.5", "repository_poll_seconds", 0.5),
    ("CNNSERVE_MODEL_NAME", "digits", "model_name", "digits"),
    ("CNNSERVE_TLS_CERT", "server.crt", "tls_cert", "server.crt"),
    ("CNNSERVE_TLS_KEY", "server.key", "tls_key", "server.key"),
    ("CNNSERVE_TLS_CLIENT_CA", "ca.pem", "tls_client_ca", "ca.pem"),
    ("CNNSERVE_METRICS_HOST", "127.0.0.1", "metrics_host", "127.0.0.1"),
    ("CNNSERVE_GRPC_RESTRICTED_PROTOCOL", "inference,health:k=v; model-repository:admin=a=b",
     "grpc_restricted_protocol", ("inference,health:k=v", "model-repository:admin=a=b")),
    ("CNNSERVE_HTTP_RESTRICTED_API", "statistics:key=value", "http_restricted_api", ("statistics:key=value",)),
    ("CNNSERVE_GRPC_MAX_CONCURRENT_STREAMS", "64", "grpc_max_concurrent_streams", 64),
    ("CNNSERVE_GRPC_KEEPALIVE_TIME", "60000", "grpc_keepalive_time", 60000),
    ("CNNSERVE_GRPC_KEEPALIVE_TIMEOUT", "5000", "grpc_keepalive_timeout", 5000),
    ("CNNSERVE_GRPC_MIN_PING_INTERVAL", "10000",
     "grpc_min_ping_interval", 10000),
    ("CNNSERVE_GRPC_HTTP2_MAX_PING_STRIKES", "0", "grpc_http2_max_ping_strikes", 0),
    ("CNNSERVE_GRPC_MAX_CONNECTION_IDLE", "60000", "grpc_max_connection_idle", 60000),
    ("CNNSERVE_GRPC_MAX_CONNECTION_AGE", "300000", "grpc_max_connection_age", 300000),
    ("CNNSERVE_GRPC_MAX_CONNECTION_AGE_GRACE", "10000", "grpc_max_connection_age_grace", 10000),
]  # fmt: skip
# What a variable needs beside it to be valid at all.
_TLS = {"CNNSERVE_TLS_CERT": "server.crt", "CNNSERVE_TLS_KEY": "server.key"}
COMPANIONS = {"CNNSERVE_LOAD_MODELS": {"CNNSERVE_MODEL_CONTROL_MODE": "explicit"}, "CNNSERVE_TLS_CERT": _TLS,
              "CNNSERVE_TLS_KEY": _TLS, "CNNSERVE_TLS_CLIENT_CA": _TLS}  # fmt: skip


@pytest.mark.parametrize(("variable", "text", "field", "expected"), ENV)
def test_each_variable_sets_its_field(variable: str, text: str, field: str, expected: object) -> None:
    environ = {**COMPANIONS.get(variable, {}), variable: text}
    assert getattr(Settings.from_env(environ), field) == expected
    assert getattr(load(**environ), field) == expected


def test_every_field_has_a_variable_and_a_flag() -> None:
    assert {o.variable for o in OPTIONS} == {v for v, *_ in ENV}
    assert {o.field for o in OPTIONS} == set(Settings.__dataclass_fields__)


def test_flags_win_over_env_which_wins_over_defaults() -> None:
    s = load("--grpc-port", "9000", "--device", "cpu", CNNSERVE_GRPC_PORT="7000", CNNSERVE_INSTANCES="3")
    assert (s.grpc_port, s.instances, s.device, s.metrics_port) == (9000, 3, "cpu", 8002)


def test_every_flag_parses() -> None:
    s = load(
        "--repo", "/r", "--host", "::", "--grpc-port", "0", "--metrics-port", "-1", "--device", "cuda",
        "--intra-op-threads", "8", "--inter-op-threads", "1", "--instances", "2", "--max-batch-size", "32",
        "--max-queue-delay-us", "500", "--max-queue-size", "64", "--max-message-bytes", "16777216",
        "--grace-seconds", "0", "--log-level", "warning", "--model", "lenet5", "--max-images-per-request", "4",
        "--max-image-pixels", "4096", "--decode-threads", "1", "--preferred-batch-sizes", "1,8",
    )  # fmt: skip
    assert s == Settings(
        repo="/r", host="::", grpc_port=0, metrics_port=-1, device="cuda", intra_op_threads=8, inter_op_threads=1,
        instances=2, max_batch_size=32, max_queue_delay_us=500, max_queue_size=64, max_message_bytes=16 * MIB,
        grace_seconds=0.0, log_level="warning", models=("lenet5",), max_images_per_request=4, max_image_pixels=4096,
        decode_threads=1, preferred_batch_sizes=(1, 8),
    )  # fmt: skip
    assert not s.metrics_enabled
    assert s.batching_overrides() == {"max_batch_size": 32, "max_queue_delay_us": 500, "preferred_batch_sizes": (1, 8)}
    # "none": no preferred size at all, which is not the same as leaving config.json's
    assert load("--preferred-batch-sizes", "none").batching_overrides() == {"preferred_batch_sizes": ()}
    assert "preferred_batch_sizes" not in load().batching_overrides()


def test_models_repeat_or_take_commas_and_replace_the_variable() -> None:
    assert load("--model", "lenet5", "--model", "vgg16,resnet50").models == ("lenet5", "vgg16", "resnet50")
    assert load("--model", "lenet5", CNNSERVE_MODELS="vgg16").models == ("lenet5",)
    assert load(CNNSERVE_MODELS="vgg16").models == ("vgg16",)


def test_an_empty_variable_counts_as_unset() -> None:
    assert load(CNNSERVE_GRPC_PORT="", CNNSERVE_MAX_BATCH_SIZE=" ", CNNSERVE_MODELS="") == Settings()


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSERVE_GRPC_PORT", "18001")
    assert Settings.from_env().grpc_port == 18001
    assert Settings.from_args(parser().parse_args([])).grpc_port == 18001


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        ("CNNSERVE_GRPC_PORT", "abc", "CNNSERVE_GRPC_PORT='abc': expected an integer port 0-65535"),
        ("CNNSERVE_GRPC_PORT", "65536", "CNNSERVE_GRPC_PORT='65536': expected an integer port 0-65535"),
        ("CNNSERVE_GRPC_PORT", "-1", "CNNSERVE_GRPC_PORT='-1': expected an integer port 0-65535"),
        ("CNNSERVE_METRICS_PORT", "-2", "CNNSERVE_METRICS_PORT='-2': expected an integer port 0-65535, or -1 for off"),
        ("CNNSERVE_DEVICE", "gpu", "CNNSERVE_DEVICE='gpu': expected auto, cpu or cuda"),
        ("CNNSERVE_INSTANCES", "0", "CNNSERVE_INSTANCES='0': expected an integer, 1 or more, or auto"),
        ("CNNSERVE_INTRA_OP_THREADS", "1.5", "CNNSERVE_INTRA_OP_THREADS='1.5': expected an integer, 0 or more"),
        ("CNNSERVE_MAX_BATCH_SIZE", "0", "CNNSERVE_MAX_BATCH_SIZE='0': expected an integer, 1 or more"),
        ("CNNSERVE_MAX_IMAGE_PIXELS", "0", "CNNSERVE_MAX_IMAGE_PIXELS='0': expected an integer, 1 or more"),
        ("CNNSERVE_MAX_IMAGES_PER_REQUEST", "many",
         "CNNSERVE_MAX_IMAGES_PER_REQUEST='many': expected an integer, 1 or more"),
        ("CNNSERVE_MAX_QUEUE_DELAY_US", "-5",
         "CNNSERVE_MAX_QUEUE_DELAY_US='-5': expected an integer number of microseconds, 0 or more"),
        ("CNNSERVE_MAX_MESSAGE_BYTES", "2GiB",
         "CNNSERVE_MAX_MESSAGE_BYTES='2GiB': expected a size from 1KiB to 2GiB-1 (bytes, or a KiB/MiB/GiB suffix)"),
        ("CNNSERVE_MAX_MESSAGE_BYTES", "64MB",
         "CNNSERVE_MAX_MESSAGE_BYTES='64MB': expected a size from 1KiB to 2GiB-1 (bytes, or a KiB/MiB/GiB suffix)"),
        ("CNNSERVE_GRACE_SECONDS", "nan", "CNNSERVE_GRACE_SECONDS='nan': expected a number of seconds, 0 or more"),
        ("CNNSERVE_GRACE_SECONDS", "-1", "CNNSERVE_GRACE_SECONDS='-1': expected a number of seconds, 0 or more"),
        ("CNNSERVE_LOG_LEVEL", "verbose", "CNNSERVE_LOG_LEVEL='verbose': expected debug, info, warning or error"),
        ("CNNSERVE_MODELS", ",", "CNNSERVE_MODELS=',': expected model names, comma-separated"),
        ("CNNSERVE_TRACE_CONFIG", "rate=x",
         "CNNSERVE_TRACE_CONFIG='rate=x': expected Triton's trace settings: level=OFF|TIMESTAMPS, rate=N, count=N, "
         "mode=triton|opentelemetry, triton,file=PATH, triton,log-frequency=N, opentelemetry,url=URL, "
         "opentelemetry,resource=KEY=VALUE, opentelemetry,bsp_max_queue_size=N, opentelemetry,bsp_schedule_delay=MS, "
         "opentelemetry,bsp_max_export_batch_size=N"),
    ],
)  # fmt: skip
def test_bad_variables_name_the_variable_and_the_expectation(variable: str, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: text})
    assert str(info.value) == message
    # Rejected even where a flag overrides it: a typo in the environment should not hide behind a
    # flag today and surface the day the flag is dropped.
    with pytest.raises(SettingsError) as info:
        load("--grpc-port", "9000", **{variable: text})
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc-port", "abc"], "argument --grpc-port: expected an integer port 0-65535, got 'abc'"),
        (["--metrics-port", "-2"],
         "argument --metrics-port: expected an integer port 0-65535, or -1 for off, got '-2'"),
        (["--device", "tpu"], "argument --device: expected auto, cpu or cuda, got 'tpu'"),
        (["--instances", "0"], "argument --instances: expected an integer, 1 or more, or auto, got '0'"),
        (["--grace-seconds", "inf"], "argument --grace-seconds: expected a number of seconds, 0 or more, got 'inf'"),
        (["--model", ""], "argument --model: expected model names, comma-separated, got ''"),
        (["--preferred-batch-sizes", "1,x"],
         "argument --preferred-batch-sizes: expected batch sizes, comma-separated integers of 1 or more, or none, "
         "got '1,x'"),
        (["--preferred-batch-sizes", "0,4"],
         "argument --preferred-batch-sizes: expected batch sizes, comma-separated integers of 1 or more, or none, "
         "got '0,4'"),
    ],
)  # fmt: skip
def test_bad_flags_are_usage_errors_naming_the_flag(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(flags)
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"cnnserve serve: error: {message}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grpc_port": 70000}, "grpc_port=70000: expected an integer port 0-65535"),
        ({"instances": True}, "instances=True: expected an integer, 1 or more, or auto"),
        ({"grace_seconds": math.inf}, "grace_seconds=inf: expected a number of seconds, 0 or more"),
        ({"max_message_bytes": 512}, "max_message_bytes=512: expected a size from 1KiB to 2GiB-1"),
        ({"repo": ""}, "repo='': expected a folder path"),
        ({"models": ["lenet5"]}, "models=['lenet5']: expected model names"),
    ],
)
def test_direct_construction_is_checked_too(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


def test_sizes_take_binary_suffixes() -> None:
    sizes = {text: Settings.from_env({"CNNSERVE_MAX_MESSAGE_BYTES": text}).max_message_bytes
             for text in ("1024", "64 MiB", "4kib", "1GiB", "67_108_864")}  # fmt: skip
    assert sizes == {"1024": 1024, "64 MiB": 64 * MIB, "4kib": 4096, "1GiB": 1024 * MIB, "67_108_864": 64 * MIB}


def test_help_names_each_variable_and_default() -> None:
    text = " ".join(parser().format_help().split())  # undo argparse's line wrapping
    for option in OPTIONS:
        assert option.flag in text
        assert f"env {option.variable})" in text
    assert "(default: 8001; env CNNSERVE_GRPC_PORT)" in text
    assert "(default: 64MiB; env CNNSERVE_MAX_MESSAGE_BYTES)" in text
    assert "(default: each model's config.json; env CNNSERVE_MAX_BATCH_SIZE)" in text


def test_the_cli_reports_a_bad_variable_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnserve.cli import main

    monkeypatch.setenv("CNNSERVE_GRPC_PORT", "abc")
    assert main(["serve"]) == 1
    assert capsys.readouterr().err == (
        "cnnserve serve: error: CNNSERVE_GRPC_PORT='abc': expected an integer port 0-65535\n"
    )


def test_drain_seconds_default_variable_flag_and_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert Settings().drain_seconds == 0.0  # refuse new requests at once on SIGTERM, as before
    assert Settings.from_env({"CNNSERVE_DRAIN_SECONDS": "2.5"}).drain_seconds == 2.5
    assert load("--drain-seconds", "5", CNNSERVE_DRAIN_SECONDS="2").drain_seconds == 5.0  # the flag wins
    with pytest.raises(SettingsError, match=r"drain_seconds=-1: expected a number of seconds, 0 or more"):
        Settings(drain_seconds=-1)
    with pytest.raises(SystemExit):
        parser().parse_args(["--drain-seconds", "nan"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "cnnserve serve: error: argument --drain-seconds: expected a number of seconds, 0 or more, got 'nan'"
    )


def test_worker_timeout_default_flag_and_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert Settings().worker_timeout == 30.0  # gunicorn's --timeout default
    assert load("--worker-timeout", "5", CNNSERVE_WORKER_TIMEOUT="2").worker_timeout == 5.0  # the flag wins
    with pytest.raises(SettingsError, match=r"CNNSERVE_WORKER_TIMEOUT='soon': expected a number of seconds, 0 or more"):
        Settings.from_env({"CNNSERVE_WORKER_TIMEOUT": "soon"})
    with pytest.raises(SystemExit):
        parser().parse_args(["--worker-timeout", "-1"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "cnnserve serve: error: argument --worker-timeout: expected a number of seconds, 0 or more, got '-1'"
    )


def test_a_restricted_groups_key_is_never_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"CNNSERVE_GRPC_RESTRICTED_PROTOCOL": "inference:k=hunter2; inference:j=hunter3"})
    assert "hunter" not in str(caught.value) and "each group once" in str(caught.value)
    assert "hunter" not in repr(Settings(http_restricted_api=("inference:k=hunter2",)))
    with pytest.raises(SettingsError, match="give both"):
        Settings(tls_cert="server.crt")


def test_each_setting_is_declared_once_with_its_help_and_docs() -> None:
    fields = dataclasses.fields(Settings)
    assert [f.name for f in fields] == [o.field for o in OPTIONS]  # OPTIONS is read off the class
    for option in OPTIONS:
        assert option.help and option.doc and option.flag.startswith("--"), option.field
        assert option.variable not in option.doc  # the variable and flag are said by the table, not again


def test_traces_need_a_file() -> None:
    with pytest.raises(SettingsError, match="trace_config: level=TIMESTAMPS needs triton,file=PATH"):
        load("--trace-config", "level=TIMESTAMPS")
    assert load("--trace-config", "level=TIMESTAMPS", "--trace-config", "triton,file=/tmp/t.json").trace_config == (
        "level=TIMESTAMPS", "triton,file=/tmp/t.json")

