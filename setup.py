"""The C extension: everything else is in pyproject.toml.

``cnnserve.go._fastgo`` computes the Go rules and the policy network's 48 feature planes (see
cnnserve/go/_fastgo.c); it needs a C compiler and the Python headers at install time (gcc and
python3-dev on Debian; the Dockerfile's build stage installs them).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cnnserve.go._fastgo",
            sources=["cnnserve/go/_fastgo.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
