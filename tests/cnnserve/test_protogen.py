"""The generated stubs are fresh, import under the installed protobuf, and match Triton's wire format."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import google.protobuf
import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc import service_pb2 as triton

from cnnserve import protogen
from cnnserve.generated.inference import grpc_service_pb2 as ours
from cnnserve.generated.inference import grpc_service_pb2_grpc as ours_grpc

RPCS = {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
        "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "ModelStatistics",
        "TraceSetting", "LogSettings"}  # fmt: skip


def run_python(code: str, *path: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, warnings as errors, importing from the repository and
    ``path``: import-time traps only show in a process that has imported nothing yet."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (protogen.ROOT, *path))}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        cwd=protogen.ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


# -- fresh ---------------------------------------------------------------------------------------


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in protogen.generate(tmp_path)}
    committed = {
        p.relative_to(protogen.GENERATED_DIR): p.read_bytes()
        for p in protogen.GENERATED_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), "run `make proto`: the generated files differ"
    stale = sorted(str(name) for name, data in fresh.items() if committed[name] != data)
    assert not stale, f"run `make proto`: cnnserve/generated/ is stale in {stale}"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in protogen.generate(tmp_path / "a")}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in protogen.generate(tmp_path / "b")}
    assert first == second


# -- the gencode/runtime trap and the duplicate-symbol trap --------------------------------------


def test_stubs_were_generated_for_the_installed_runtimes() -> None:
    text = (protogen.GENERATED_DIR / "inference" / "grpc_service_pb2.py").read_text()
    match = re.search(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)$", text, re.MULTILINE)
    assert match, "no protobuf version stamp in the generated code"
    gencode = tuple(map(int, match.groups()))
    runtime = tuple(map(int, google.protobuf.__version__.split(".")[:3]))
    # protobuf refuses gencode newer than the runtime, and warns for older majors.
    assert gencode[0] == runtime[0] and gencode <= runtime, (
        f"stubs are for protobuf {'.'.join(map(str, gencode))}, the runtime is {google.protobuf.__version__}: "
        "pin grpcio-tools to the line that generates for the installed protobuf (pyproject.toml), then `make proto`"
    )
    assert tuple(map(int, ours_grpc.GRPC_GENERATED_VERSION.split("."))) <= tuple(
        map(int, grpc.__version__.split(".")[:3])
    )


@pytest.mark.parametrize(
    "imports",
    [
        ["cnnserve.generated.inference.grpc_service_pb2_grpc", "tritonclient.grpc"],
        ["tritonclient.grpc", "cnnserve.generated.inference.grpc_service_pb2_grpc"],
    ],
)
def test_stubs_import_beside_tritonclient_in_a_fresh_process(imports: list[str]) -> None:
    # Both define inference.ModelInferRequest; ours live in their own pool, so the order is free.
    done = run_python(
        f"""
        import importlib
        for name in {imports!r}:
            importlib.import_module(name)
        from cnnserve.generated.inference import grpc_service_pb2 as pb
        from tritonclient.grpc import service_pb2 as triton
        assert pb.ModelInferRequest is not triton.ModelInferRequest
        print(pb.ModelInferRequest(model_name="m").model_name)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "m\n"


# -- wire-compatible with Triton ------------------------------------------------------------------


def _nested(message: Descriptor) -> list[Descriptor]:
    return [message, *(m for nested in message.nested_types for m in _nested(nested))]


def _shape(message: Descriptor) -> dict[str, object]:
    """Everything about a message that decides its wire format and its generated API."""

    def field(f: FieldDescriptor) -> tuple[object, ...]:
        return (
            f.number,
            f.type,
            f.is_repeated,
            f.message_type.full_name if f.message_type else None,
            f.enum_type.full_name if f.enum_type else None,
            f.containing_oneof.name if f.containing_oneof else None,
            f.has_presence,
        )

    return {
        "fields": {f.name: field(f) for f in message.fields},
        "nested": sorted(n.name for n in message.nested_types),
        "enums": sorted(e.name for e in message.enum_types),
        "oneofs": {o.name: [f.name for f in o.fields] for o in message.oneofs},
        "map_entry": message.GetOptions().map_entry,
    }


OUR_MESSAGES = sorted(m.full_name for top in ours.DESCRIPTOR.message_types_by_name.values() for m in _nested(top))


@pytest.mark.parametrize("name", OUR_MESSAGES)
def test_every_message_is_tritons_field_for_field(name: str) -> None:
    mine = ours.DESCRIPTOR.pool.FindMessageTypeByName(name)
    theirs = triton.DESCRIPTOR.pool.FindMessageTypeByName(name)
    assert _shape(mine) == _shape(theirs)


def test_the_messages_the_rpcs_need_are_all_there() -> None:
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    needed: set[str] = set()
    todo = [t for m in service.methods for t in (m.input_type, m.output_type)]
    while todo:
        message = todo.pop()
        if message.full_name not in needed:
            needed.add(message.full_name)
            todo += [f.message_type for f in message.fields if f.message_type]
            todo += message.nested_types
    assert needed == set(OUR_MESSAGES), "define exactly the messages the rpcs use"
    for name in ("InferParameter", "InferTensorContents", "StatisticDuration", "InferBatchStatistics",
                 "ModelInferRequest.InferInputTensor", "ModelMetadataResponse.TensorMetadata",
                 "RepositoryIndexResponse.ModelIndex", "ModelInferResponse.InferOutputTensor"):  # fmt: skip
        assert f"inference.{name}" in needed


def test_the_service_is_tritons_subset() -> None:
    mine = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert mine.full_name == theirs.full_name == "inference.GRPCInferenceService"
    assert {m.name for m in mine.methods} == RPCS
    for method in mine.methods:
        reference = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            reference.input_type.full_name,
            reference.output_type.full_name,
        )
        assert (method.client_streaming, method.server_streaming) == (False, False)


def test_a_full_request_from_tritonclient_parses_as_ours() -> None:
    request = triton.ModelInferRequest(model_name="m", model_version="1", id="x")
    request.parameters["priority"].uint64_param = 2
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 2])
    tensor.parameters["binary_data_size"].int64_param = 8
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    request.outputs.add(name="logits").parameters["classification"].int64_param = 3
    request.raw_input_contents.append(b"\x00" * 8)
    parsed = ours.ModelInferRequest.FromString(request.SerializeToString())
    assert parsed.SerializeToString(deterministic=True) == request.SerializeToString(deterministic=True)
    assert parsed.parameters["priority"].WhichOneof("parameter_choice") == "uint64_param"
    assert parsed.inputs[0].contents.fp32_contents == [1.0, 2.0]
    assert parsed.outputs[0].parameters["classification"].int64_param == 3


def test_full_statistics_from_us_parse_as_tritons() -> None:
    duration = ours.StatisticDuration(count=3, ns=1500)
    stats = ours.ModelStatistics(
        name="m", version="1", last_inference=1_700_000_000_000, inference_count=9, execution_count=4,
        inference_stats=ours.InferStatistics(success=duration, queue=duration, cache_miss=duration),
        batch_stats=[ours.InferBatchStatistics(batch_size=8, compute_infer=duration)],
        memory_usage=[ours.MemoryUsage(type="GPU", id=0, byte_size=1 << 20)],
        response_stats={"0": ours.InferResponseStatistics(success=duration, cancel=duration)},
    )  # fmt: skip
    response = ours.ModelStatisticsResponse(model_stats=[stats])
    parsed = triton.ModelStatisticsResponse.FromString(response.SerializeToString())
    assert parsed.SerializeToString(deterministic=True) == response.SerializeToString(deterministic=True)
    assert parsed.model_stats[0].response_stats["0"].cancel.ns == 1500


# -- generate() on other trees ---------------------------------------------------------------------


def test_generated_packages_import_each_other_and_well_known_types(tmp_path: Path) -> None:
    protos = tmp_path / "proto"
    (protos / "acme" / "v1").mkdir(parents=True)
    (protos / "common.proto").write_text('syntax = "proto3";\npackage common;\nmessage Id { string value = 1; }\n')
    (protos / "acme" / "v1" / "shop.proto").write_text(
        textwrap.dedent(
            """
            syntax = "proto3";
            package acme.v1;
            import "common.proto";
            import "google/protobuf/timestamp.proto";
            message Order { common.Id id = 1; google.protobuf.Timestamp placed = 2; }
            service Shop { rpc Get(common.Id) returns (Order); }
            """
        )
    )
    written = protogen.generate(tmp_path / "stubs", protos, package="stubs")
    names = sorted(p.relative_to(tmp_path / "stubs").as_posix() for p in written)
    assert names == [
        "__init__.py", "acme/__init__.py", "acme/v1/__init__.py",
        "acme/v1/shop_pb2.py", "acme/v1/shop_pb2.pyi", "acme/v1/shop_pb2_grpc.py",
        "common_pb2.py", "common_pb2.pyi", "common_pb2_grpc.py",
    ]  # fmt: skip
    assert all(p.read_text().startswith(protogen.HEADER) for p in written)
    done = run_python(
        """
        from google.protobuf import descriptor_pool
        from stubs.acme.v1 import shop_pb2, shop_pb2_grpc
        from stubs import POOL
        order = shop_pb2.Order()
        order.id.value = "42"
        order.placed.seconds = 7
        print(shop_pb2.Order.FromString(order.SerializeToString()).id.value, shop_pb2_grpc.ShopStub.__name__)
        assert shop_pb2.DESCRIPTOR.pool is POOL
        try:
            descriptor_pool.Default().FindMessageTypeByName("acme.v1.Order")
        except KeyError:
            print("not in the default pool")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42 ShopStub\nnot in the default pool\n"


def test_protoc_errors_are_raised(tmp_path: Path) -> None:
    (tmp_path / "proto").mkdir()
    (tmp_path / "proto" / "bad.proto").write_text('syntax = "proto3";\nmessage {')
    with pytest.raises(RuntimeError, match=r"protoc failed on \['bad.proto'\]"):
        protogen.generate(tmp_path / "out", tmp_path / "proto")


def test_generate_wants_a_fresh_folder(tmp_path: Path) -> None:
    (tmp_path / "old_pb2.py").write_text("")
    with pytest.raises(ValueError, match="is not empty; generate into a new folder"):
        protogen.generate(tmp_path)
