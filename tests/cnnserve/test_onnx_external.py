"""cnnserve.onnx_external: the external-data reader that needs no onnx package (the refusals it
serves are tested with the repository, tests/cnnserve/test_repository.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnserve import onnx_external
from cnnserve.onnx_external import external_data


def test_external_data_reader_knows_onnx_field_numbers() -> None:
    """The server reads ONNX's protobuf without the onnx package; its field numbers are onnx's."""
    onnx = pytest.importorskip("onnx")
    for message, children in onnx_external._TENSOR_FIELDS.items():
        descriptor = getattr(onnx, message).DESCRIPTOR
        for number, child in children.items():
            assert descriptor.fields_by_number[number].message_type.name == child, (message, number)
    fields = onnx.TensorProto.DESCRIPTOR.fields_by_name
    assert (fields["name"].number, fields["external_data"].number, fields["data_location"].number) == (8, 13, 14)
    assert onnx.TensorProto.EXTERNAL == 1
    entry = onnx.StringStringEntryProto.DESCRIPTOR.fields_by_name
    assert (entry["key"].number, entry["value"].number) == (1, 2)


def test_external_data_reader_ignores_files_that_are_not_onnx(tmp_path: Path) -> None:
    for content in (b"", b"this is not an ONNX file", b"\x3a\xff\xff\xff\xff\x0f"):
        (tmp_path / "model.onnx").write_bytes(content)
        assert external_data(tmp_path / "model.onnx") == []
