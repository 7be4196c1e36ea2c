#!/usr/bin/env bash
# The GPU check behind the GPU figures of the docs, run on a machine with an NVIDIA GPU and no
# network: onnxruntime-gpu and the few wheels its image lacks are put in ~/.cache/ortsite and
# ~/.cache/site beforehand. Exports resnet50 there, shows which provider,
# batch shapes and CUDA options `--device auto` gives, then runs bench/vs_gpu.py (raw ONNX Runtime
# against the server: callers, uint8, 8 images a request, fp16, CUDA graphs, the deep models).
# POINT_SECONDS per measured point and DEEP models (comma-separated, '' to skip) fit it to the budget.
set -euo pipefail
export PYTHONPATH=~/.cache/ortsite:~/.cache/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -c "import onnxruntime as o; o.preload_dlls(); print('onnxruntime', o.__version__, o.get_available_providers())"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m cnnserve export resnet50 --repo /tmp/exp 2>&1 | tail -4
# Which provider --device auto picks, read from the server's own log.
python3 -m cnnserve serve --repo /tmp/exp --host 127.0.0.1 --grpc-port 0 --metrics-port -1 > "$OUT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 120); do grep -q "cnnserve ready" "$OUT/serve.log" && break; sleep 0.5; done
kill -TERM $pid; wait $pid || true
grep -E "ready on|options|ERROR|WARNING" "$OUT/serve.log" || true
python3 -m bench.vs_gpu --device cuda --repo /tmp/exp --seconds "${POINT_SECONDS:-3}" --deep "${DEEP-vgg16,vgg19,resnet152}" \
    2>&1 | tee "$OUT/vs_gpu.txt"
