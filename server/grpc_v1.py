"""``cnnserve.v1.CnnServe``: images in, labels out (see proto/cnnserve/v1/service.proto).

Like the V2 servicer: convert, call the protocol-agnostic side (:mod:`server.classify`),
convert back; errors and metrics in :func:`server.observe.observed`.
"""

from __future__ import annotations

import grpc

from server.classify import Classifier
from server.dataplane import DataPlane
from server.generated.cnnserve.v1 import service_pb2 as pb
from server.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from server.metrics import Metrics
from server.observe import observed


class CnnServeServicer(pb_grpc.CnnServeServicer):
    def __init__(self, plane: DataPlane, classifier: Classifier, metrics: Metrics) -> None:
        self.plane = plane
        self.classifier = classifier
        self.metrics = metrics

    @observed("Classify")
    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        classified = await self.classifier.classify(
            request.model_name,
            request.model_version,
            list(request.images),
            request.top_k,
            timeout=context.time_remaining(),
        )
        model = classified.model
        return pb.ClassifyResponse(
            model_name=model.name,
            model_version=str(model.version),
            trained=bool(model.config and model.config.trained),
            results=[
                pb.Classification(
                    classes=[pb.ClassScore(index=c.index, label=c.label, probability=c.probability) for c in result]
                )
                for result in classified.results
            ],
        )
