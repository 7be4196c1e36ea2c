"""KServe V2 over HTTP: Triton's paths and JSON shapes, each handler a few lines around the data
plane (the same one gRPC calls, so a model is one thing whichever protocol reaches it)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from aiohttp import web

from cnnserve.server import errors, logs, reports
from cnnserve.server.classification import top_classes
from cnnserve.server.dataplane import EXTENSIONS, SERVER_NAME, SERVER_VERSION, DataPlane
from cnnserve.server.rest import FOUND
from cnnserve.server.rest.tensors import HEADER_LENGTH, decode, encode_reply, parse_request
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import CURRENT, stamp
from cnnserve.triton_config import triton_config

MODEL = "/v2/models/{name}"
VERSION = "/v2/models/{name}/versions/{version}"


def routes(plane: DataPlane) -> list[web.RouteDef]:
    v2 = _V2(plane)
    table = [
        web.get("/v2", v2.server_metadata),
        web.get("/v2/health/live", v2.live),
        web.get("/v2/health/ready", v2.ready),
        web.post("/v2/repository/index", v2.repository_index),
        web.post("/v2/repository/models/{name}/load", v2.load),
        web.post("/v2/repository/models/{name}/unload", v2.unload),
        web.get("/v2/logging", v2.log_settings),
        web.post("/v2/logging", v2.log_settings),
        web.get("/v2/trace/setting", v2.trace_settings),
        web.post("/v2/trace/setting", v2.trace_settings),
        web.get(MODEL + "/trace/setting", v2.trace_settings),
        web.post(MODEL + "/trace/setting", v2.trace_settings),
    ]
    table.append(web.get("/v2/models/stats", v2.statistics))
    for base in (MODEL, VERSION):
        table += [
            web.get(base, v2.model_metadata),
            web.get(base + "/ready", v2.model_ready),
            web.get(base + "/config", v2.model_config),
            web.get(base + "/stats", v2.statistics),
            web.post(base + "/infer", v2.infer),
        ]
    return table


def _health(ok: bool) -> web.Response:
    return web.Response(status=200 if ok else 400)  # Triton: 200, or 400 with no body


class _V2:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)})

    async def live(self, request: web.Request) -> web.Response:
        return _health(self.plane.live())

    async def ready(self, request: web.Request) -> web.Response:
        return _health(self.plane.ready())

    async def model_ready(self, request: web.Request) -> web.Response:
        return _health(self.plane.model_ready(*_model(request)))

    async def model_metadata(self, request: web.Request) -> web.Response:
        config = self.plane.config(*_model(request))

        def meta(specs: tuple) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": [-1, *t.shape]} for t in specs]

        return web.json_response({"name": config.name, "versions": [str(config.version)],
                                  "platform": "onnxruntime_onnx", "inputs": meta(config.inputs),
                                  "outputs": meta(config.outputs)})  # fmt: skip

    async def model_config(self, request: web.Request) -> web.Response:
        return web.json_response(triton_config(self.plane.config(*_model(request))))

    async def statistics(self, request: web.Request) -> web.Response:
        name, version = request.match_info.get("name", ""), request.match_info.get("version", "")
        return web.json_response({"model_stats": [reports.statistics(m) for m in self.plane.statistics(name, version)]})

    async def repository_index(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            raise errors.InvalidArgument(f"failed to parse the request JSON: {exc}") from None
        ready_only = bool(body.get("ready", False)) if isinstance(body, dict) else False
        return web.json_response([
            {"name": m.name, "version": str(m.version) if m.version else "", "state": m.state.triton,
             "reason": m.reason}
            for m in self.plane.index(ready_only=ready_only)
        ])  # fmt: skip

    async def load(self, request: web.Request) -> web.Response:
        await self.plane.load(request.match_info["name"])
        return web.Response(status=200)

    async def unload(self, request: web.Request) -> web.Response:
        await self.plane.unload(request.match_info["name"])
        return web.Response(status=200)

    async def log_settings(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response(logs.current().to_json())
        return web.json_response(logs.change(await _settings(request, "log settings")))

    async def trace_settings(self, request: web.Request) -> web.Response:
        model = request.match_info.get("name", "")
        given = await _settings(request, "trace settings") if request.method == "POST" else None
        return web.json_response(self.plane.trace_settings(model, given or None))

    async def infer(self, request: web.Request) -> web.Response:
        model = self.plane.resolve(request[FOUND], *_model(request))
        config = model.config
        assert config is not None
        body = await request.read()
        trace = CURRENT.get()
        if trace is not None:
            trace.stamp(record.HTTP_RECV_END)
            trace.stamp(record.DECODE_START)
        document, tensors = parse_request(body, request.headers.get(HEADER_LENGTH))
        # Names, datatypes and shapes first, from the JSON: bounded by the model's sizes before decoding.
        items = self.plane.check_tensors(config, {t.name: (t.datatype, t.shape) for t in tensors})
        inputs = {t.name: decode(t) for t in tensors}
        if trace is not None:
            trace.request_id = str(document.get("id", ""))
            trace.stamp(record.DECODE_END)
        results = await self.plane.infer(model, inputs, items)
        stamp(record.ENCODE_START)
        binary_default = bool((document.get("parameters") or {}).get("binary_data_output", False))
        outputs = []
        for output in document.get("outputs") or [{"name": o.name} for o in config.outputs]:
            outputs.append(_output(output, results, config, binary_default))
        reply = {"model_name": config.name, "model_version": str(config.version)}
        if "id" in document:
            reply["id"] = document["id"]
        if _large(outputs):
            body, header_length = await asyncio.to_thread(encode_reply, reply, outputs)
        else:
            body, header_length = encode_reply(reply, outputs)
        if header_length is None:
            return web.Response(body=body, content_type="application/json")
        return web.Response(body=body, content_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(header_length)})  # fmt: skip


async def _settings(request: web.Request, what: str) -> dict[str, Any]:
    """A settings API's body: a JSON object."""
    try:
        given = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"{what}: the body is not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise errors.InvalidArgument(f"{what}: expected a JSON object of settings, got {type(given).__name__}")
    return given


def _model(request: web.Request) -> tuple[str, str]:
    return request.match_info["name"], request.match_info.get("version", "")


def _output(
    output: Any, outputs: dict[str, np.ndarray], config: Any, binary_default: bool
) -> tuple[str, np.ndarray, bool]:
    if not isinstance(output, dict) or not isinstance(output.get("name"), str):
        raise errors.InvalidArgument("outputs: each requested output must be an object with a 'name'")
    name = output["name"]
    if name not in outputs:
        raise errors.InvalidArgument(f"outputs: unknown output {name!r}; model {config.name!r} has {sorted(outputs)}")
    parameters = output.get("parameters") or {}
    array = outputs[name]
    k = parameters.get("classification")
    if k is not None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise errors.InvalidArgument(f"outputs[{name!r}].parameters.classification: expected an integer >= 1")
        array = top_classes(array, k, config.labels)
    return name, np.asarray(array), bool(parameters.get("binary_data", binary_default))


def _large(outputs: list[tuple[str, np.ndarray, bool]]) -> bool:
    # JSON ``data`` is written element by element: past this, off the event loop.
    return sum(a.size for _, a, binary in outputs if not binary) > 1 << 16
