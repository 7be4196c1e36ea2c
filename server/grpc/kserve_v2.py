"""``inference.GRPCInferenceService``: the KServe V2 protocol, as Triton's clients speak it.

Each method converts the request, calls the data plane and converts back; errors become gRPC
statuses in :mod:`cnnserve.server.grpc.status`.
"""

from __future__ import annotations

import asyncio
import math

import grpc
import numpy as np
from google.protobuf import json_format

from cnnserve import codec
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc
from cnnserve.repository import ModelConfig
from cnnserve.server import errors, logs, reports
from cnnserve.server.classification import top_classes
from cnnserve.server.dataplane import EXTENSIONS, SERVER_NAME, SERVER_VERSION, DataPlane
from cnnserve.server.grpc.status import handle_errors, observed
from cnnserve.server.metrics import Metrics
from cnnserve.server.model_manager import ServedModel
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import stamp


def _classification_k(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> int | None:
    if "classification" not in output.parameters:
        return None
    param = output.parameters["classification"]
    choice = param.WhichOneof("parameter_choice")
    value = getattr(param, choice) if choice in ("int64_param", "uint64_param") else None
    if value is None or value < 1:
        raise errors.InvalidArgument(f"outputs[{output.name!r}].parameters.classification: expected an integer >= 1")
    return int(value)


def _requested(
    output: pb.ModelInferRequest.InferRequestedOutputTensor, outputs: dict[str, np.ndarray], config: ModelConfig
) -> tuple[str, np.ndarray]:
    """A requested output by name, as top classes when it asks for ``classification``."""
    if output.name not in outputs:
        raise errors.InvalidArgument(
            f"outputs: unknown output {output.name!r}; model {config.name!r} has {sorted(outputs)}"
        )
    k = _classification_k(output)
    return output.name, outputs[output.name] if k is None else top_classes(outputs[output.name], k, config.labels)


# Typed contents (a repeated protobuf field per tensor) and BYTES are decoded element by element;
# past this many elements that happens in a worker thread, not on the event loop. Raw numeric
# tensors are zero-copy views of the message and always decode in place.
INLINE_DECODE_ELEMENTS = 1 << 16


async def _decoded(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    raw = request.raw_input_contents
    elementwise = sum(math.prod(t.shape) for t in request.inputs if t.datatype == "BYTES" or not raw)
    try:
        if elementwise > INLINE_DECODE_ELEMENTS:
            return await asyncio.to_thread(codec.decode_request_inputs, request)
        return codec.decode_request_inputs(request)
    except codec.TensorError as exc:
        raise errors.InvalidArgument(str(exc)) from None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, metrics: Metrics) -> None:
        self.plane = plane
        self.metrics = metrics

    @handle_errors
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.plane.live())

    @handle_errors
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @handle_errors
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    @handle_errors
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=list(EXTENSIONS))

    @handle_errors
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        config = self.plane.config(request.name, request.version)

        def meta(specs: tuple) -> list[pb.ModelMetadataResponse.TensorMetadata]:
            return [pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=[-1, *t.shape])
                    for t in specs]  # fmt: skip

        return pb.ModelMetadataResponse(
            name=config.name,
            versions=[str(config.version)],
            platform="onnxruntime_onnx",
            inputs=meta(config.inputs),
            outputs=meta(config.outputs),
        )

    @observed("ModelInfer")
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext, found: ServedModel | None
    ) -> pb.ModelInferResponse:
        model = self.plane.resolve(found, request.model_name, request.model_version)
        config = model.config
        assert config is not None
        # Names, datatypes and shapes first, from the tensors' headers: a request is bounded by
        # the model's own sizes before a byte of it is decoded.
        stamp(record.DECODE_START)
        items = self.plane.check_tensors(config, {t.name: (t.datatype, t.shape) for t in request.inputs})
        # The codec gives each tensor exactly the datatype and shape its header names: checked.
        inputs = await _decoded(request)
        stamp(record.DECODE_END)
        results = await self.plane.infer(model, inputs, items, timeout=context.time_remaining())
        stamp(record.ENCODE_START)
        response = pb.ModelInferResponse(model_name=config.name, model_version=str(config.version), id=request.id)
        # No outputs named: all of them as they are, in the model's order (the runner's).
        outputs = [_requested(o, results, config) for o in request.outputs] or results.items()
        for name, array in outputs:
            try:
                tensor, raw = codec.encode_output(name, np.asarray(array))
            except codec.TensorError as exc:  # the model produced it: not the caller's fault
                raise errors.Internal(str(exc)) from None
            response.outputs.append(tensor)
            response.raw_output_contents.append(raw)
        return response

    @handle_errors
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(
                    name=m.name, version=str(m.version) if m.version else "", state=m.state.triton,
                    reason=m.reason,
                )
                for m in self.plane.index(ready_only=request.ready)
            ]
        )  # fmt: skip

    @handle_errors
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        await self.plane.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @handle_errors
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self.plane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @handle_errors
    async def TraceSetting(
        self, request: pb.TraceSettingRequest, context: grpc.aio.ServicerContext
    ) -> pb.TraceSettingResponse:
        # Triton's reading of the map: no settings asks for them; a setting with no value clears
        # a model's own; one value is a value; the level alone may be a list.
        given = {name: (None if not value.value else list(value.value) if name == "trace_level" else value.value[0])
                 for name, value in request.settings.items()}  # fmt: skip
        settings = self.plane.trace_settings(request.model_name, given or None)
        response = pb.TraceSettingResponse()
        for name, value in settings.items():
            response.settings[name].value.extend([value] if isinstance(value, str) else value)
        return response

    @handle_errors
    async def LogSettings(
        self, request: pb.LogSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.LogSettingsResponse:
        given = {name: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
                 for name, value in request.settings.items()}  # fmt: skip
        response = pb.LogSettingsResponse()
        for name, value in logs.change(given).items():
            kind = "uint32_param" if isinstance(value, int) else "string_param"
            setattr(response.settings[name], "bool_param" if isinstance(value, bool) else kind, value)
        return response

    @handle_errors
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        return pb.ModelStatisticsResponse(
            model_stats=[_statistics(m) for m in self.plane.statistics(request.name, request.version)]
        )


def _statistics(model: ServedModel) -> pb.ModelStatistics:
    return json_format.ParseDict(reports.statistics(model), pb.ModelStatistics())
