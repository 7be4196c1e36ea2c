"""One exception hierarchy carrying the gRPC status code, and the decorator that turns it into one.

The data plane raises these without knowing about gRPC contexts; servicers are wrapped by
:func:`handle_errors`, so a bad request becomes a status and a message, never a dead server.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

log = logging.getLogger("cnnserve.errors")


class ServingError(Exception):
    """A request the server cannot serve; ``code`` is the gRPC status the caller gets."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServingError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(ServingError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServingError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ServingError):
    code = grpc.StatusCode.CANCELLED


class Internal(ServingError):
    code = grpc.StatusCode.INTERNAL


def to_status(exc: Exception, where: str = "") -> tuple[grpc.StatusCode, str]:
    """The status and message a caller gets for ``exc``; unexpected errors are logged in full."""
    if isinstance(exc, ServingError):
        return exc.code, exc.message
    log.error("unexpected error%s", f" in {where}" if where else "", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


R = TypeVar("R")
Handler = Callable[..., Awaitable[R]]


def handle_errors(method: Handler[R]) -> Handler[R]:
    """Wrap an async servicer method: ServingError -> its status; anything else -> INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = to_status(exc, method.__name__)
            await context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")

    return wrapper
