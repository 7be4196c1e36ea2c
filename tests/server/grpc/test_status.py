"""ServingError and handle_errors, through a real grpc.aio server and channel on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from cnnserve.server import errors
from cnnserve.server.grpc.status import handle_errors

SERVICE = "cnnserve.test.Errors"

# What the servicer raises for each request payload.
RAISES: dict[bytes, Callable[[], Exception]] = {
    b"invalid": lambda: errors.InvalidArgument("input 'x': shape [1, -1] has a negative dimension"),
    b"not-found": lambda: errors.NotFound("model_name: unknown model 'nope'"),
    b"unavailable": lambda: errors.Unavailable("model 'm' is not ready (LOADING)"),
    b"exhausted": lambda: errors.ResourceExhausted("model 'm': queue full (8 requests waiting)"),
    b"deadline": lambda: errors.DeadlineExceeded("model 'm': deadline passed while queued"),
    b"cancelled": lambda: errors.Cancelled("model 'm': the request was cancelled"),
    b"internal": lambda: errors.Internal("model 'm': output 'y' has shape (0, 1), batch is 1"),
    b"bug": lambda: KeyError("y"),
    b"long": lambda: errors.InvalidArgument("input " + "x" * 100_000),
}


class Servicer:
    """Answers b"ok"; raises what RAISES says; aborts itself on b"abort"."""

    @handle_errors
    async def Call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request == b"abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the servicer's own abort")
        if request in RAISES:
            raise RAISES[request]()
        await asyncio.sleep(0)  # a real await, as servicer methods have
        return b"ok:" + request


async def call_all(requests: list[bytes]) -> list[tuple[grpc.StatusCode, str]]:
    """Each request through a real server and channel, in order: (code, details) for each."""
    server = grpc.aio.server()
    servicer = Servicer()
    handler = grpc.unary_unary_rpc_method_handler(servicer.Call)  # bytes in, bytes out
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    outcomes = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(f"/{SERVICE}/Call")
            for request in requests:
                try:
                    reply = await call(request, timeout=10)
                    outcomes.append((grpc.StatusCode.OK, reply.decode()))
                except grpc.aio.AioRpcError as exc:
                    outcomes.append((exc.code(), exc.details() or ""))
    finally:
        await server.stop(None)
    return outcomes


@pytest.mark.parametrize(
    ("request_", "code", "details"),
    [
        (b"invalid", grpc.StatusCode.INVALID_ARGUMENT, "input 'x': shape [1, -1] has a negative dimension"),
        (b"not-found", grpc.StatusCode.NOT_FOUND, "model_name: unknown model 'nope'"),
        (b"unavailable", grpc.StatusCode.UNAVAILABLE, "model 'm' is not ready (LOADING)"),
        (b"exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED, "model 'm': queue full (8 requests waiting)"),
        (b"deadline", grpc.StatusCode.DEADLINE_EXCEEDED, "model 'm': deadline passed while queued"),
        (b"cancelled", grpc.StatusCode.CANCELLED, "model 'm': the request was cancelled"),
        (b"internal", grpc.StatusCode.INTERNAL, "model 'm': output 'y' has shape (0, 1), batch is 1"),
        (b"abort", grpc.StatusCode.PERMISSION_DENIED, "the servicer's own abort"),
    ],
)
def test_each_error_reaches_the_client_as_its_status(request_: bytes, code: grpc.StatusCode, details: str) -> None:
    # And the server answers the next call as if nothing happened.
    assert asyncio.run(call_all([request_, b"next"])) == [(code, details), (grpc.StatusCode.OK, "ok:next")]


def test_an_unexpected_exception_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="cnnserve.errors"):
        outcomes = asyncio.run(call_all([b"bug", b"next"]))
    assert outcomes == [(grpc.StatusCode.INTERNAL, "internal error: KeyError: 'y'"), (grpc.StatusCode.OK, "ok:next")]
    [record] = caplog.records
    assert record.getMessage() == "unexpected error in Servicer.Call"
    assert record.exc_info is not None and record.exc_info[0] is KeyError  # the traceback is in the log


def test_expected_errors_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cnnserve.errors"):
        asyncio.run(call_all([b"invalid", b"exhausted"]))
    assert caplog.records == []


def test_long_details_are_cut_to_fit_in_the_trailers() -> None:
    [(code, details)] = asyncio.run(call_all([b"long"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(details) == errors.MAX_DETAILS and details.startswith("input xxx") and details.endswith("x...")


def test_the_code_is_a_class_attribute_and_the_message_is_kept() -> None:
    codes = {cls: cls.code for cls in errors.ServingError.__subclasses__()}
    assert codes == {
        errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        errors.NotFound: grpc.StatusCode.NOT_FOUND,
        errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
        errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
        errors.Cancelled: grpc.StatusCode.CANCELLED,
        errors.Internal: grpc.StatusCode.INTERNAL,
    }
    error = errors.NotFound("model_name: unknown model 'nope'")
    assert (error.message, str(error)) == ("model_name: unknown model 'nope'",) * 2
    assert errors.to_status(error) == (grpc.StatusCode.NOT_FOUND, "model_name: unknown model 'nope'")


class FakeContext:
    def __init__(self) -> None:
        self.aborted: list[tuple[grpc.StatusCode, str]] = []

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted.append((code, details))
        raise grpc.aio.AbortError()


def test_cancellation_is_not_turned_into_a_status() -> None:
    # grpc.aio cancels the handler's task when the client goes away; the task must end cancelled.
    @handle_errors
    async def method(self: Any, request: bytes, context: Any) -> bytes:
        raise asyncio.CancelledError

    context = FakeContext()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(method(None, b"", context))
    assert context.aborted == []


def test_the_wrapper_keeps_the_methods_name() -> None:
    assert Servicer.Call.__name__ == "Call"
    assert Servicer.Call.__qualname__ == "Servicer.Call"


def test_only_async_methods_can_be_wrapped() -> None:
    def sync(self: Any, request: bytes, context: Any) -> bytes:
        return request

    with pytest.raises(TypeError, match=r"handle_errors wraps `async def` unary methods; .*sync is not one"):
        handle_errors(sync)  # type: ignore[arg-type]
