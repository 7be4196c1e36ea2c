"""Inputs and outputs of a session that replays a CUDA graph (``--cuda-graphs on``).

A captured graph keeps the device addresses it was captured with, so each session gets its
inputs and outputs allocated on the GPU once and bound once; a run copies the new inputs into
them in place, replays, and copies the outputs back. One session per batch shape (padded shapes)
means one graph per session. Only used on CUDA; nothing here runs on a CPU-only machine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from cnnserve.datatypes import numpy_dtype
from cnnserve.repository import ModelConfig


class GraphIO:
    def __init__(self, session: ort.InferenceSession, config: ModelConfig, size: int, device_id: int = 0) -> None:
        def on_device(shape: tuple[int, ...], datatype: str) -> ort.OrtValue:
            return ort.OrtValue.ortvalue_from_shape_and_type([size, *shape], numpy_dtype(datatype), "cuda", device_id)

        self.inputs = {t.name: on_device(t.shape, t.datatype) for t in config.inputs}
        self.outputs = {t.name: on_device(t.shape, t.datatype) for t in config.outputs}
        self.binding = session.io_binding()
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        for name, value in self.outputs.items():
            self.binding.bind_ortvalue_output(name, value)

    def run(
        self, session: ort.InferenceSession, host: Mapping[str, np.ndarray], size: int
    ) -> tuple[dict[str, np.ndarray], float]:
        """Copy ``host[name][:size]`` in, replay (the first run captures), copy the outputs out;
        returns them and the seconds the run took."""
        for name, value in self.inputs.items():
            value.update_inplace(host[name][:size])
        started = time.perf_counter()
        session.run_with_iobinding(self.binding)
        seconds = time.perf_counter() - started
        return {name: value.numpy() for name, value in self.outputs.items()}, seconds
