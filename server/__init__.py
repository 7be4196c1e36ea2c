"""The serving process: settings, lifecycle, the model manager, the data plane, the dynamic
batcher, ONNX Runtime (:mod:`server.runtime`), the front ends (:mod:`server.grpc`), the services
behind ``cnnserve.v1`` (:mod:`server.services`), errors and metrics. README's "How it fits
together" follows one request through them."""
