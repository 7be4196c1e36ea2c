"""The serving process: settings, lifecycle, the model manager, the data plane, the dynamic
batcher, ONNX Runtime (:mod:`cnnserve.server.runtime`), the front ends (:mod:`cnnserve.server.grpc`), the services
behind ``cnnserve.v1`` (:mod:`cnnserve.server.services`), errors and metrics. README's "How it fits
together" follows one request through them."""
