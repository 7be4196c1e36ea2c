"""cnnserve's server side: model repository, ONNX Runtime, batching, gRPC services, metrics, CLI."""
