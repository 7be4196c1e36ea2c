"""``cnnserve.v1.CnnServe``: images in, labels out; a Go position in, move probabilities out
(see proto/cnnserve/v1/service.proto).

Like the V2 servicer: convert, call the protocol-agnostic side
(:mod:`cnnserve.server.services.classifier`, :mod:`cnnserve.server.services.policy`), convert back;
errors and metrics in :func:`cnnserve.server.grpc.status.observed`.
"""

from __future__ import annotations

import grpc

from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.go.board import BLACK, WHITE
from cnnserve.go.coords import to_gtp
from cnnserve.server import errors
from cnnserve.server.dataplane import DataPlane
from cnnserve.server.grpc.status import observed
from cnnserve.server.metrics import Metrics
from cnnserve.server.model_manager import ServedModel
from cnnserve.server.services.classifier import Classifier
from cnnserve.server.services.policy import PolicyService, PositionQuery
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import stamp

_COLORS = {pb.BLACK: BLACK, pb.WHITE: WHITE}
_WIRE_COLORS = {BLACK: pb.BLACK, WHITE: pb.WHITE}


def position_query(request: pb.PolicyRequest) -> PositionQuery:
    if request.to_move == pb.COLOR_UNSPECIFIED:
        to_move = None
    elif request.to_move in _COLORS:
        to_move = _COLORS[request.to_move]
    else:
        raise errors.InvalidArgument(f"to_move: {request.to_move} is not a colour; expected BLACK (1) or WHITE (2)")
    kind = request.WhichOneof("position")
    return PositionQuery(
        board=request.board if kind == "board" else None,
        sgf=request.sgf if kind == "sgf" else None,
        move_number=request.move_number if request.HasField("move_number") else None,
        to_move=to_move,
    )


class CnnServeServicer(pb_grpc.CnnServeServicer):
    def __init__(self, plane: DataPlane, classifier: Classifier, policies: PolicyService, metrics: Metrics) -> None:
        self.plane = plane
        self.classifier = classifier
        self.policies = policies
        self.metrics = metrics

    @observed("Classify")
    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext, found: ServedModel | None
    ) -> pb.ClassifyResponse:
        classified = await self.classifier.classify(
            found,
            request.model_name,
            request.model_version,
            list(request.images),
            request.top_k,
            timeout=context.time_remaining(),
        )
        stamp(record.ENCODE_START)
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

    @observed("Policy")
    async def Policy(
        self, request: pb.PolicyRequest, context: grpc.aio.ServicerContext, found: ServedModel | None
    ) -> pb.PolicyResponse:
        result = await self.policies.policy(
            found,
            request.model_name,
            request.model_version,
            position_query(request),
            request.top_k,
            timeout=context.time_remaining(),
        )
        stamp(record.ENCODE_START)
        model, where = result.model, result.position
        return pb.PolicyResponse(
            model_name=model.name,
            model_version=str(model.version),
            probabilities=result.probabilities.tolist(),
            top_moves=[pb.MoveProbability(vertex=to_gtp(p), probability=q, index=p) for p, q in result.top],
            trained=bool(model.config and model.config.trained),
            to_move=_WIRE_COLORS[where.to_move],
            board=where.board.to_text(),
            move_number=where.move_number,
            legal_moves=result.legal,
        )
