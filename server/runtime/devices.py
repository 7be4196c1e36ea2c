"""Which execution provider a session can use here: probing the NVIDIA driver, and the providers
to ask ONNX Runtime for under each ``--device``.

- ``cpu``: CPUExecutionProvider only.
- ``auto``: CUDA only where it can plausibly work: the CUDA provider is listed *and* the NVIDIA
  driver initialises and reports a device. The onnxruntime-gpu wheel lists CUDA everywhere, and
  asking for it on a machine without a GPU prints ERROR lines before it falls back to the CPU;
  a CPU-only machine must start quietly.
- ``cuda``: CUDA or a :class:`RuntimeUnavailable` error that names what is missing.

Either way, what is reported is what the session says it uses (``get_providers()``, read by
:mod:`cnnserve.server.runtime.runner`): a CUDA provider whose libraries fail to load falls back to the CPU
without raising.
"""

from __future__ import annotations

import ctypes
import functools

import onnxruntime as ort

from cnnserve.server.settings import DEVICES, Settings

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class RuntimeUnavailable(RuntimeError):
    """The requested execution provider cannot run here (``--device cuda`` without a usable GPU)."""


_CUDA_ERROR_NO_DEVICE = 100  # what cuInit returns with no device visible (CUDA_VISIBLE_DEVICES="")


@functools.cache
def cuda_problem() -> str:
    """Why no CUDA device is usable in this process, or "" when the NVIDIA driver reports one.

    Asks the driver itself (``cuInit`` and ``cuDeviceGetCount`` from libcuda.so.1) rather than
    looking for /dev/nvidiactl: that also covers WSL2 (no such node), a container with the driver
    library but no device, and CUDA_VISIBLE_DEVICES="" - each a case where ONNX Runtime would print
    ERROR lines and fall back. It initialises CUDA in this process, as the CUDA provider would.
    """
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver found (libcuda.so.1 does not load)"
    status = driver.cuInit(0)
    count = ctypes.c_int(0)
    if status == 0:
        status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status == _CUDA_ERROR_NO_DEVICE or (status == 0 and count.value == 0):
        return "the NVIDIA driver reports no device (is CUDA_VISIBLE_DEVICES set?)"
    if status != 0:
        return f"the NVIDIA driver did not initialise (CUDA driver error {status})"
    return ""


def gpu_present() -> bool:
    return not cuda_problem()


@functools.cache
def _preload_cuda_libraries() -> None:
    # Finds CUDA and cuDNN installed as Python packages (nvidia-*-cu13), which are not on the
    # loader's path; without it the CUDA provider fails to load and the session falls back.
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()


_ARENA_STRATEGIES = {"same_as_requested": "kSameAsRequested", "next_power_of_two": "kNextPowerOfTwo"}


def cuda_provider_options(settings: Settings) -> dict[str, str]:
    """The CUDA provider's options, as ONNX Runtime names them, from the settings."""
    options = {
        "cudnn_conv_algo_search": settings.cuda_conv_algo_search.upper(),
        "arena_extend_strategy": _ARENA_STRATEGIES[settings.cuda_arena_strategy],
        "do_copy_in_default_stream": "1" if settings.cuda_copy_stream == "default" else "0",
        "use_tf32": "1" if settings.cuda_tf32 == "on" else "0",
    }
    if settings.cuda_memory_limit:
        options["gpu_mem_limit"] = str(settings.cuda_memory_limit)
    return options


def providers_for(device: str) -> list[str]:
    """The providers to ask ONNX Runtime for; raises RuntimeUnavailable for ``cuda`` without a GPU."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU]
    cuda_listed = CUDA in ort.get_available_providers()
    if device == "cuda":
        if not cuda_listed:
            raise RuntimeUnavailable(
                f"--device cuda: this onnxruntime build ({ort.__version__}) has no {CUDA}; install onnxruntime-gpu"
            )
        if not gpu_present():
            raise RuntimeUnavailable(f"--device cuda: {cuda_problem()}")
    elif not (cuda_listed and gpu_present()):
        return [CPU]
    _preload_cuda_libraries()
    return [CUDA, CPU]
