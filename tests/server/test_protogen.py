"""The generated stubs are fresh, import under the installed protobuf, and match Triton's wire format."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import service_pb2 as triton

from server import protogen
from server.generated.inference import grpc_service_pb2 as ours


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in protogen.generate(tmp_path)}
    committed = {
        p.relative_to(protogen.GENERATED_DIR): p.read_bytes()
        for p in protogen.GENERATED_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(fresh) == sorted(committed), "run `make proto`: the set of generated files changed"
    stale = [str(name) for name, text in fresh.items() if committed[name] != text]
    assert not stale, f"run `make proto`: stale generated files {stale}"


def _fields(message: Descriptor) -> dict[str, tuple[int, int, bool, str]]:
    return {
        f.name: (f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else "")
        for f in message.fields
    }


def _walk(message: Descriptor) -> list[Descriptor]:
    return [message, *(m for nested in message.nested_types for m in _walk(nested))]


@pytest.mark.parametrize("name", sorted(ours.DESCRIPTOR.message_types_by_name))
def test_every_message_matches_tritons_field_for_field(name: str) -> None:
    for message in _walk(ours.DESCRIPTOR.message_types_by_name[name]):
        theirs = triton.DESCRIPTOR.pool.FindMessageTypeByName(message.full_name)
        mine = _fields(message)
        reference = _fields(theirs)
        # Triton may have fields we never send; every field we have must be Triton's exactly.
        assert {k: reference.get(k) for k in mine} == mine, message.full_name


def test_every_rpc_has_tritons_method_and_types() -> None:
    mine = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert mine.full_name == theirs.full_name == "inference.GRPCInferenceService"
    for method in mine.methods:
        reference = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            reference.input_type.full_name,
            reference.output_type.full_name,
        )
    assert {m.name for m in mine.methods} >= {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
        "RepositoryIndex", "ModelStatistics",
    }  # fmt: skip


def test_a_request_tritonclient_serialises_parses_as_ours() -> None:
    request = triton.ModelInferRequest(model_name="m", model_version="1", id="x")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    request.outputs.add(name="logits").parameters["classification"].int64_param = 3
    request.raw_input_contents.append(b"\x00" * 8)
    parsed = ours.ModelInferRequest.FromString(request.SerializeToString())
    assert parsed.inputs[0].contents.fp32_contents == [1.0, 2.0]
    assert parsed.outputs[0].parameters["classification"].int64_param == 3
    assert parsed.raw_input_contents == [b"\x00" * 8]
