"""PyTorch builders for the classic convolutional networks, their summaries and ONNX export.

Nothing here imports :mod:`cnnserve.server` or :mod:`cnnserve.client`: the builders stand on their own.
"""

from cnnserve.builders.registry import (
    ArchSpec,
    Preprocessing,
    UnknownArchitectureError,
    UnknownOptionError,
    build,
    get,
    names,
)

__all__ = [
    "ArchSpec",
    "Preprocessing",
    "UnknownArchitectureError",
    "UnknownOptionError",
    "build",
    "get",
    "names",
]
