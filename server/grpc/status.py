"""Exceptions become gRPC statuses here: :func:`handle_errors` for every unary RPC, and
:func:`observed` for the RPCs that run a model (ModelInfer, Classify, Policy), which also looks
the request's model up (the request's one lookup: the method gets what it found), counts each
call in the request metrics under its final status code, and traces the calls that are sampled.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import grpc

from cnnserve.server.dataplane import DataPlane
from cnnserve.server.errors import to_status
from cnnserve.server.metrics import Metrics
from cnnserve.server.model_manager import ServedModel
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import CURRENT


class _Observed(Protocol):
    plane: DataPlane
    metrics: Metrics


class _ModelRequest(Protocol):
    @property
    def model_name(self) -> str: ...


Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]]
# A model RPC's method: also given the model its request named, as the data plane found it.
ModelMethod = Callable[[Servicer, Request, grpc.aio.ServicerContext, ServedModel | None], Awaitable[Response]]
Wrapped = Callable[[Servicer, Request, grpc.aio.ServicerContext], Coroutine[Any, Any, Response]]
ObservedServicer = TypeVar("ObservedServicer", bound=_Observed)
ModelRequest = TypeVar("ModelRequest", bound=_ModelRequest)


def handle_errors(method: Method[Servicer, Request, Response]) -> Wrapped[Servicer, Request, Response]:
    """Wrap a unary ``async def Rpc(self, request, context)`` servicer method.

    A :class:`ServingError` becomes ``context.abort(code, message)``; any other exception becomes
    INTERNAL (and is logged). An abort the method made itself passes through unchanged, and so does
    ``asyncio.CancelledError`` (a BaseException): grpc.aio raises it when the caller goes away, and
    there is nobody left to answer.
    """
    if not inspect.iscoroutinefunction(method):
        # A sync or streaming method would return before anything is raised: nothing to catch.
        raise TypeError(f"handle_errors wraps `async def` unary methods; {method.__qualname__} is not one")

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, details = to_status(exc, method.__qualname__)
            await context.abort(code, details)
            raise AssertionError("unreachable: context.abort raises") from exc

    return wrapper


def observed(
    rpc: str,
) -> Callable[
    [ModelMethod[ObservedServicer, ModelRequest, Response]], Wrapped[ObservedServicer, ModelRequest, Response]
]:
    """Find the request's model, count the call in flight, then its duration and status code
    under ``rpc``; errors become statuses as in ``handle_errors``."""

    def decorate(
        method: ModelMethod[ObservedServicer, ModelRequest, Response],
    ) -> Wrapped[ObservedServicer, ModelRequest, Response]:
        @functools.wraps(method)
        async def wrapper(self: ObservedServicer, request: ModelRequest, context: grpc.aio.ServicerContext) -> Response:
            started = time.perf_counter()
            found = self.plane.find(request.model_name)
            # Unknown names share one label value, so a client cannot grow the metrics without end.
            model = found.name if found is not None else ""
            code = grpc.StatusCode.CANCELLED  # unless the call ends another way below
            message = ""
            tracer = self.plane.tracer
            trace = None
            if tracer.table.active and found is not None:
                trace = tracer.begin(model, "grpc", rpc, record.GRPC_WAITREAD_END, _traceparent(context))
                if trace is not None:
                    trace.request_id = getattr(request, "id", "")
                    token = CURRENT.set(trace)
            with self.metrics.inflight(model), self.plane.handling(found):
                try:
                    response = await method(self, request, context, found)
                    code = grpc.StatusCode.OK
                    return response
                except Exception as exc:
                    code, message = to_status(exc, rpc)
                    await context.abort(code, message)
                    raise AssertionError("unreachable: context.abort raises") from None
                finally:
                    self.metrics.observe_request(model, rpc, code.name, time.perf_counter() - started)
                    if trace is not None:
                        trace.stamp(record.GRPC_SEND_START)
                        CURRENT.reset(token)
                        tracer.finish(trace, code.name, message)

        return wrapper

    return decorate


def _traceparent(context: grpc.aio.ServicerContext) -> str | None:
    """The W3C ``traceparent`` in the call's metadata (gRPC keys are lower case)."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent":
            return value if isinstance(value, str) else None
    return None
