"""One exception hierarchy for requests the server cannot serve, each carrying its status code.

The data plane, the batcher and the services raise these without knowing about gRPC contexts (as
Seldon MLServer's ``MLServerError`` does); the front ends turn them into statuses
(:mod:`cnnserve.server.grpc.status`), so a bad request gets a status and a message that names the field,
never a dead server or a bare UNKNOWN.
"""

from __future__ import annotations

import logging

import grpc

log = logging.getLogger("cnnserve.errors")

# Status details travel in trailing metadata, which clients cap (grpc's default is 8 KiB for all
# metadata together); a message quoting a huge client-chosen name would turn into a transport error.
MAX_DETAILS = 1024


class ServingError(Exception):
    """A request the server cannot serve; ``code`` is the gRPC status the caller gets."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    """The request itself is wrong: a bad shape, datatype, parameter or payload."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServingError):
    """No such model or version."""

    code = grpc.StatusCode.NOT_FOUND


class Unavailable(ServingError):
    """Not ready: loading, failed to load, or shutting down. Retrying later may succeed."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(ServingError):
    """A queue or size limit is reached."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServingError):
    """The caller's deadline passed before the work was done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ServingError):
    """The caller went away."""

    code = grpc.StatusCode.CANCELLED


class Internal(ServingError):
    """A bug or a broken model on the server's side; not the caller's fault."""

    code = grpc.StatusCode.INTERNAL


def _shorten(message: str) -> str:
    return message if len(message) <= MAX_DETAILS else message[: MAX_DETAILS - 3] + "..."


def to_status(exc: Exception, where: str = "") -> tuple[grpc.StatusCode, str]:
    """The status code and details a caller gets for ``exc``.

    ServingErrors are expected (the caller's mistake, or the server's state) and are not logged.
    Anything else is a bug: logged with its traceback, reported as INTERNAL naming only the
    exception, so the caller has something to quote in a bug report.
    """
    if isinstance(exc, ServingError):
        return exc.code, _shorten(exc.message)
    log.error("unexpected error%s", f" in {where}" if where else "", exc_info=exc)
    return grpc.StatusCode.INTERNAL, _shorten(f"internal error: {type(exc).__name__}: {exc}")
