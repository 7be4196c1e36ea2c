# cnnserve's images, from one Dockerfile:
#
#   docker build -t cnnserve:cpu .                    # the server (the last stage): no torch
#   docker build -t cnnserve-export:cpu --target export .   # the exporter: torch, writes the models
#   docker build -t cnnserve:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 .
#
# The serving image needs only what serving needs (cnnserve's wheel: ONNX Runtime, grpcio, numpy,
# Pillow, prometheus-client). The wheel is built in a stage of its own, the one with a C compiler
# (cnnserve/go/_fastgo.c, the Go rules and feature planes, is compiled there); the images that
# run it get the wheel and no compiler. Exporting needs PyTorch, so it has a stage of its own; docker-compose
# runs it once to fill the model volume before the servers start. The compose profile "gpu" builds
# the server on NVIDIA's CUDA runtime image (BASE_IMAGE), where onnxruntime-gpu finds CUDA 12 and
# cuDNN 9.
#
# Both images run as the unprivileged user cnnserve (uid and gid 10001), not root. The server
# writes only under /tmp (the supervisor's metrics folder), so it runs with a read-only root
# filesystem: `docker run --read-only --tmpfs /tmp -v models:/models cnnserve:cpu`. The model
# folders belong to that user, so that a fresh volume mounted there is writable by the exporter
# (a volume filled by an older, root-run exporter needs `chown -R 10001:10001` once).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS base

# HOME=/tmp: the one place a non-root process with a read-only root filesystem can write.
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH HOME=/tmp

# NVIDIA's images have no Python of their own.
RUN if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && groupadd --system --gid 10001 cnnserve \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin cnnserve \
    && mkdir -p /models && chown 10001:10001 /models

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY cnnserve ./cnnserve
COPY builders ./builders
COPY server ./server
COPY client ./client
COPY proto ./proto
# The model repository: written by the export stage, read by the server.
ENV CNNSERVE_REPO=/models

# cnnserve's wheel, with its C extension compiled: gcc and Python's headers (python:3.11-slim has
# them; on NVIDIA's images they come with python3-dev).
FROM base AS wheel
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && { python3 -c "import pathlib, sys, sysconfig; sys.exit(not pathlib.Path(sysconfig.get_path('include'), 'Python.h').exists())" \
         || apt-get install -y --no-install-recommends python3-dev; } \
    && rm -rf /var/lib/apt/lists/* \
    && pip wheel --no-deps --wheel-dir /wheels .

# The exporter: the serving install plus torch (its CPU build, from PyTorch's own index: the
# default one would fetch gigabytes of CUDA wheels) and the export extra.
FROM base AS export
COPY --from=wheel /wheels /wheels
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    && pip install "$(ls /wheels/cnnserve-*.whl)[export]"
COPY deploy/export.sh /usr/local/bin/cnnserve-export
# docker-compose's export also copies into the CUDA server's volume at /models-gpu.
RUN mkdir -p /models-gpu && chown 10001:10001 /models-gpu
USER 10001:10001
VOLUME /models
ENTRYPOINT ["cnnserve-export"]

# The server, the default target: no torch, no matplotlib.
FROM base AS serve
COPY --from=wheel /wheels /wheels
RUN pip install /wheels/cnnserve-*.whl
COPY deploy/serve.sh /usr/local/bin/cnnserve-serve
# No bytecode written at run time: the root filesystem may be read-only.
ENV PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
VOLUME /models
EXPOSE 8000 8001 8002
# Ready when KServe V2's HTTP readiness says so (every model loaded), as `curl -f` would check it:
# the image has Python, not curl. With HTTP turned off (CNNSERVE_HTTP_PORT=-1), use gRPC's health
# service instead (grpc_health_probe) or run with --no-healthcheck.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CNNSERVE_HTTP_PORT', '8000') + '/v2/health/ready', timeout=4)"]
ENTRYPOINT ["cnnserve-serve"]
