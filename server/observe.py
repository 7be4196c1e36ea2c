"""One decorator for the RPCs that run a model (ModelInfer, Classify, Policy): the error handling of
:func:`server.errors.handle_errors`, plus the request metrics, which need the final status code.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import grpc

from server import errors
from server.dataplane import DataPlane
from server.metrics import Metrics


class _Observed(Protocol):
    plane: DataPlane
    metrics: Metrics


class _ModelRequest(Protocol):
    @property
    def model_name(self) -> str: ...


Servicer = TypeVar("Servicer", bound=_Observed)
Request = TypeVar("Request", bound=_ModelRequest)
Response = TypeVar("Response")
Method = Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]]
Wrapped = Callable[[Servicer, Request, grpc.aio.ServicerContext], Coroutine[Any, Any, Response]]


def observed(rpc: str) -> Callable[[Method[Servicer, Request, Response]], Wrapped[Servicer, Request, Response]]:
    """Count the call in flight, then its duration and status code under ``rpc``; errors become
    statuses as in ``handle_errors``."""

    def decorate(method: Method[Servicer, Request, Response]) -> Wrapped[Servicer, Request, Response]:
        @functools.wraps(method)
        async def wrapper(self: Servicer, request: Request, context: grpc.aio.ServicerContext) -> Response:
            started = time.perf_counter()
            # Unknown names share one label value, so a client cannot grow the metrics without end.
            model = request.model_name if request.model_name in self.plane.models.models else ""
            code = grpc.StatusCode.CANCELLED  # unless the call ends another way below
            with self.metrics.inflight(model):
                try:
                    response = await method(self, request, context)
                    code = grpc.StatusCode.OK
                    return response
                except Exception as exc:
                    code, message = errors.to_status(exc, rpc)
                    await context.abort(code, message)
                    raise AssertionError("unreachable: context.abort raises") from None
                finally:
                    self.metrics.observe_request(model, rpc, code.name, time.perf_counter() - started)

        return wrapper

    return decorate
