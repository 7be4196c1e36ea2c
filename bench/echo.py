"""A bare grpc.aio server that answers ModelInfer with a fixed reply of a given size: the
floor any Python gRPC front end stands on. ``python -m bench.echo --reply-floats 10``."""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from bench.common import CHANNEL_OPTIONS
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


async def serve(port: int, reply_floats: int) -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(reply_floats), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"echo listening: grpc=127.0.0.1:{bound}", flush=True)
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
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.reply_floats))
