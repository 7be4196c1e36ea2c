"""PyTorch builders for the classic convolutional networks, their summaries and ONNX export.

Nothing here imports ``server``: the builders stand on their own.
"""

from builders.registry import (
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
