"""Page-locked ("pinned") host buffers for a CUDA session's inputs.

ONNX Runtime copies a CPU-bound input to the GPU with cudaMemcpy; from pageable memory the driver
stages it through a pinned bounce buffer first, from registered memory it DMAs directly. The
runner's input buffers live as long as their session, so registering them once
(cudaHostRegister) pays off on every batch. Where CUDA's runtime library cannot be loaded, or
refuses, buffers stay pageable and everything still works, only slower.
"""

from __future__ import annotations

import ctypes
import functools
import logging

import numpy as np

log = logging.getLogger("cnnserve.runtime")

_LIBRARIES = ("libcudart.so.12", "libcudart.so.13", "libcudart.so")


@functools.cache
def _cudart() -> ctypes.CDLL | None:
    # onnxruntime.preload_dlls() has loaded it from the nvidia-* packages on a GPU machine; dlopen
    # finds a loaded library by its name.
    for name in _LIBRARIES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def pin(array: np.ndarray) -> bool:
    """Register ``array``'s memory with CUDA; False (and a warning, once) where it cannot be."""
    library = _cudart()
    status = (
        -1
        if library is None
        else library.cudaHostRegister(
            ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes), ctypes.c_uint(0)
        )
    )
    if status != 0:
        _warn_once(status)
    return status == 0


def unpin(array: np.ndarray) -> None:
    library = _cudart()
    if library is not None:
        library.cudaHostUnregister(ctypes.c_void_p(array.ctypes.data))


@functools.cache
def _warn_once(status: int) -> None:
    why = "libcudart could not be loaded" if status == -1 else f"cudaHostRegister returned error {status}"
    log.warning("input buffers stay pageable (%s): host-to-device copies go through a bounce buffer", why)
