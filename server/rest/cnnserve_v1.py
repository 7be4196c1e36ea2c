"""``cnnserve.v1`` over HTTP, for people with curl: images in, labels out; a Go position in, move
probabilities out. The same services, limits and messages as the gRPC ``CnnServe`` service.

    curl --data-binary @cat.jpg 'localhost:8000/v1/models/resnet50/classify?top_k=3'
    curl -F a=@cat.jpg -F b=@dog.png localhost:8000/v1/models/resnet50/classify     # several
    curl --data-binary @game.sgf 'localhost:8000/v1/models/alphago_policy/policy?move_number=120'

A policy body is an SGF record when its Content-Type is ``application/x-go-sgf`` or it opens
with ``(``, else a text board.
"""

from __future__ import annotations

from aiohttp import BodyPartReader, web

from cnnserve.go.board import BLACK, WHITE
from cnnserve.go.coords import to_gtp
from cnnserve.server import errors
from cnnserve.server.rest import FOUND
from cnnserve.server.services.classifier import Classifier
from cnnserve.server.services.policy import PolicyService, PositionQuery
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import stamp

_COLORS = {"black": BLACK, "b": BLACK, "white": WHITE, "w": WHITE}
_COLOR_NAMES = {BLACK: "black", WHITE: "white"}
SGF_TYPE = "application/x-go-sgf"


def routes(classifier: Classifier, policies: PolicyService) -> list[web.RouteDef]:
    v1 = _V1(classifier, policies)
    return [web.post("/v1/models/{name}/classify", v1.classify), web.post("/v1/models/{name}/policy", v1.policy)]


def _integer(request: web.Request, name: str, default: int | None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise errors.InvalidArgument(f"{name}: {text!r} is not an integer") from None


async def _images(request: web.Request) -> list[bytes]:
    """The image in the body, or each part of a multipart body."""
    if not request.content_type.startswith("multipart/"):
        return [await request.read()]
    images: list[bytes] = []
    total = 0
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            raise errors.InvalidArgument("multipart body: nested multipart parts are not images; send one image a part")
        images.append(bytes(await part.read()))
        total += len(images[-1])
        # aiohttp bounds each part by client_max_size, not their sum: the body's limit is the sum's.
        if total > request.client_max_size:
            raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=total)
    return images


class _V1:
    def __init__(self, classifier: Classifier, policies: PolicyService) -> None:
        self.classifier = classifier
        self.policies = policies

    async def classify(self, request: web.Request) -> web.Response:
        top_k = _integer(request, "top_k", 5)
        assert top_k is not None
        images = await _images(request)
        stamp(record.HTTP_RECV_END)
        classified = await self.classifier.classify(
            request[FOUND], request.match_info["name"], request.query.get("version", ""), images, top_k
        )
        stamp(record.ENCODE_START)
        model = classified.model
        return web.json_response({
            "model_name": model.name, "model_version": str(model.version),
            "trained": bool(model.config and model.config.trained),
            "results": [{"classes": [{"index": c.index, "label": c.label, "probability": c.probability}
                                     for c in result]} for result in classified.results],
        })  # fmt: skip

    async def policy(self, request: web.Request) -> web.Response:
        text = (await request.read()).decode("utf-8", "replace")
        stamp(record.HTTP_RECV_END)
        side = request.query.get("to_move")
        if side is not None and side.lower() not in _COLORS:
            raise errors.InvalidArgument(f"to_move: {side!r}; expected black or white")
        # SGF's own media type says so; otherwise a game tree opens with "(", a board never does.
        sgf = request.content_type == SGF_TYPE or text.lstrip().startswith("(")
        query = PositionQuery(  # an empty body is no position, as a request with neither field
            board=None if sgf or not text.strip() else text,
            sgf=text if sgf else None,
            move_number=_integer(request, "move_number", None),
            to_move=_COLORS[side.lower()] if side is not None else None,
        )
        top_k = _integer(request, "top_k", 5)
        assert top_k is not None
        result = await self.policies.policy(
            request[FOUND], request.match_info["name"], request.query.get("version", ""), query, top_k
        )
        stamp(record.ENCODE_START)
        model, where = result.model, result.position
        return web.json_response({
            "model_name": model.name, "model_version": str(model.version),
            "trained": bool(model.config and model.config.trained),
            "to_move": _COLOR_NAMES[where.to_move], "move_number": where.move_number, "board": where.board.to_text(),
            "legal_moves": result.legal,
            "top_moves": [{"vertex": to_gtp(p), "probability": q, "index": p} for p, q in result.top],
            "probabilities": result.probabilities.tolist(),
        })  # fmt: skip
