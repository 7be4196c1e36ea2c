# cnnserve's server image. CPU by default; the compose profile "gpu" builds it on NVIDIA's CUDA
# runtime image instead (BASE_IMAGE), where onnxruntime-gpu finds CUDA 12 and cuDNN 9.
#
#   docker build -t cnnserve:cpu .
#   docker build -t cnnserve:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH

# NVIDIA's images have no Python of their own.
RUN if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

# torch is only needed to export the models into the volume on first start. Its CPU build, from
# PyTorch's own index: the default one would fetch gigabytes of CUDA wheels.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY builders ./builders
COPY server ./server
COPY proto ./proto
RUN pip install .
COPY deploy/serve.sh /usr/local/bin/cnnserve-serve

# The model repository: exported on first start, kept in a volume afterwards.
ENV CNNSERVE_REPO=/models
VOLUME /models
EXPOSE 8001 8002
ENTRYPOINT ["cnnserve-serve"]
