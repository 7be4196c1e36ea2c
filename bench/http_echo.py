"""A bare aiohttp server to measure cnnserve's HTTP front end against, one process:

    python -m bench.http_echo [--port 0] [--reply-floats 10]

It answers POST ``/v2/models/{name}/infer``, once it has read the whole body, with a fixed reply
in Triton's binary tensor extension of the shape cnnserve sends (the JSON header, then
``--reply-floats`` float32 of output ``logits``, and the ``Inference-Header-Content-Length``
header): the floor any Python aiohttp front end stands on, as ``bench.echo`` is gRPC's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web

from bench.common import HEADER_LENGTH


def echo_app(reply_floats: int) -> web.Application:
    header = json.dumps({
        "model_name": "echo", "model_version": "1",
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, reply_floats],
                     "parameters": {"binary_data_size": 4 * reply_floats}}],
    }).encode()  # fmt: skip
    body = header + b"\0" * 4 * reply_floats
    headers = {HEADER_LENGTH: str(len(header))}

    async def infer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/octet-stream", headers=headers)

    # cnnserve's limit by default (--max-message-bytes): a batch of images passes here as there.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([web.post("/v2/models/{name}/infer", infer)])
    return app


async def serve(port: int, reply_floats: int) -> None:
    # As cnnserve runs its HTTP server: no access log, on an event loop it owns.
    runner = web.AppRunner(echo_app(reply_floats), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"HttpEcho listening: http=127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply-floats", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.reply_floats))
