"""Restricted groups of protocols, as Triton's ``--grpc-restricted-protocol`` and
``--http-restricted-api``: calls of a restricted group must carry a header with the right value,
or are refused (gRPC UNAVAILABLE, HTTP 403) with Triton's message. Values are compared in
constant time and never logged; a refusal names the header, never the value.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from cnnserve.server.settings import parse_restriction

GRPC_HEADER_PREFIX = "triton-grpc-protocol-"

# Each gRPC method's group (Triton's grouping; reflection describes the API: metadata).
GRPC_GROUPS = {
    "/inference.GRPCInferenceService/ServerLive": "health",
    "/inference.GRPCInferenceService/ServerReady": "health",
    "/inference.GRPCInferenceService/ModelReady": "health",
    "/grpc.health.v1.Health/Check": "health",
    "/grpc.health.v1.Health/Watch": "health",
    "/inference.GRPCInferenceService/ServerMetadata": "metadata",
    "/inference.GRPCInferenceService/ModelMetadata": "metadata",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "metadata",
    "/inference.GRPCInferenceService/ModelInfer": "inference",
    "/cnnserve.v1.CnnServe/Classify": "inference",
    "/cnnserve.v1.CnnServe/Policy": "inference",
    "/inference.GRPCInferenceService/RepositoryIndex": "model-repository",
    "/inference.GRPCInferenceService/RepositoryModelLoad": "model-repository",
    "/inference.GRPCInferenceService/RepositoryModelUnload": "model-repository",
    "/inference.GRPCInferenceService/ModelStatistics": "statistics",
    "/inference.GRPCInferenceService/TraceSetting": "trace",
    "/inference.GRPCInferenceService/LogSettings": "logging",
}


@dataclass(frozen=True)
class Restriction:
    header: str  # lower case, as HTTP/2 and aiohttp give header names
    value: bytes

    def allows(self, given: str | bytes | None) -> bool:
        if given is None:
            return False
        data = given if isinstance(given, bytes) else given.encode()
        return hmac.compare_digest(data, self.value)


def restrictions(entries: Sequence[str], header_prefix: str = "") -> dict[str, Restriction]:
    """group -> its restriction, from the settings' ``GROUPS:KEY=VALUE`` entries."""
    table = {}
    for entry in entries:
        groups, key, value = parse_restriction(entry)
        for group in groups:
            table[group] = Restriction((header_prefix + key).lower(), value.encode())
    return table


def grpc_message(restriction: Restriction) -> str:
    return f"This protocol is restricted, expecting header '{restriction.header}'"


def http_message(restriction: Restriction) -> str:
    return f"This API is restricted, expecting header '{restriction.header}'"


class RestrictedProtocols(grpc.aio.ServerInterceptor):
    """Refuses the calls of a restricted group that lack the group's header, before any handler
    runs: UNAVAILABLE with Triton's message."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.table = restrictions(entries, GRPC_HEADER_PREFIX)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        restriction = self.table.get(GRPC_GROUPS.get(handler_call_details.method, ""))
        if restriction is None or handler is None:
            return handler
        metadata: Mapping[str, Any] = dict(handler_call_details.invocation_metadata or ())
        if restriction.allows(metadata.get(restriction.header)):
            return handler
        return _refusal(handler, grpc_message(restriction))


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that only refuses."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, message)
        yield  # an async generator, as streaming handlers are

    serializers = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}  # fmt: skip
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **serializers)


def http_group(method: str, path: str) -> str:
    """The group of an HTTP request, by its path (Triton's grouping of its HTTP API)."""
    if path.startswith("/v2/health/"):
        return "health"
    if path == "/v2/logging":
        return "logging"
    if path == "/v2/trace/setting" or path.endswith("/trace/setting"):
        return "trace"
    if path.startswith("/v2/repository/"):
        return "model-repository"
    if path.endswith("/stats"):
        return "statistics"
    if path.endswith("/infer") or path.startswith("/v1/"):
        return "inference"
    if path == "/v2" or path.startswith("/v2/models/"):
        return "metadata" if not path.endswith("/ready") else "health"
    return ""
