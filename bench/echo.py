"""Bare grpc.aio servers to measure the server against, one process each:

- the echo (``python -m bench.echo --reply-floats 10``) answers ModelInfer with a fixed reply of
  a given size: the floor any Python gRPC front end stands on;
- the no-batcher server (``python -m bench.echo --model-path M.onnx``) runs the ONNX Runtime
  session directly in the handler for each request, as KServe's Python model server runs a
  synchronous ``predict``: no batcher, no worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
import onnxruntime as ort

from bench.common import CHANNEL_OPTIONS
from cnnserve import codec
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc


class Echo(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, reply_floats: int) -> None:
        reply = pb.ModelInferResponse(model_name="echo", model_version="1")
        reply.outputs.add(name="logits", datatype="FP32", shape=[1, reply_floats])
        reply.raw_output_contents.append(b"\0" * 4 * reply_floats)
        self.reply = reply

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        return self.reply


class NoBatcher(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, model_path: str) -> None:
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as cnnserve's default
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        values = self.session.run(self.outputs, codec.decode_request_inputs(request))
        reply = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        for name, value in zip(self.outputs, values, strict=True):
            tensor, raw = codec.encode_output(name, value)
            reply.outputs.append(tensor)
            reply.raw_output_contents.append(raw)
        return reply


async def serve(port: int, servicer: pb_grpc.GRPCInferenceServiceServicer, reuse_port: bool = False) -> None:
    # With --reuse-port several of these share one port, as cnnserve's workers do.
    server = grpc.aio.server(options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", int(reuse_port))])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"{type(servicer).__name__} listening: grpc=127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply-floats", type=int, default=10)
    parser.add_argument("--model-path", help="serve this ONNX file without a batcher instead of echoing")
    parser.add_argument("--reuse-port", action="store_true", help="share the port with other processes")
    args = parser.parse_args()
    servicer = NoBatcher(args.model_path) if args.model_path else Echo(args.reply_floats)
    asyncio.run(serve(args.port, servicer, args.reuse_port))
