"""Checking an ONNX graph against its config.json before it is served."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnxruntime as ort

from cnnserve.datatypes import DATATYPES
from cnnserve.repository import ModelConfig


class GraphMismatch(ValueError):
    """The ONNX graph does not have the inputs and outputs config.json promises."""


def check_graph(config: ModelConfig, session: ort.InferenceSession) -> None:
    """Refuse a graph whose inputs and outputs are not those of config.json: names, element types,
    rank and fixed item dimensions, and a symbolic batch axis (the batcher concatenates requests)."""
    where = config.onnx_path
    for kind, specs, args in (
        ("input", config.inputs, session.get_inputs()),
        ("output", config.outputs, session.get_outputs()),
    ):
        found = {a.name: a for a in args}
        names = [s.name for s in specs]
        if sorted(names) != sorted(found):
            raise GraphMismatch(
                f"{where}: config.json names {kind}s {names}, but the ONNX graph's {kind}s are {sorted(found)}"
            )
        for spec in specs:
            arg = found[spec.name]
            onnx_type = DATATYPES[spec.datatype].onnx
            if arg.type != onnx_type:
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} is {arg.type} in the graph, config.json says {spec.datatype}"
                )
            dims: Sequence[Any] = arg.shape
            if len(dims) != len(spec.shape) + 1:
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} has shape {list(dims)} in the graph, config.json says "
                    f"[batch, {', '.join(map(str, spec.shape))}]"
                )
            if isinstance(dims[0], int):
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} has a fixed batch axis of {dims[0]}; export with a dynamic one"
                )
            # A symbolic item dimension (a str or None) accepts anything; a fixed one must match.
            if any(isinstance(d, int) and d != s for d, s in zip(dims[1:], spec.shape, strict=True)):
                raise GraphMismatch(
                    f"{where}: {kind} {spec.name!r} has item shape {list(dims[1:])} in the graph, "
                    f"config.json says {list(spec.shape)}"
                )
