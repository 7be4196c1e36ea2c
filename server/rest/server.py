"""The HTTP server: an aiohttp application on the gRPC server's event loop, with the request
limits of the settings; errors become Triton's ``{"error": "..."}`` with its HTTP statuses.

aiohttp rather than an ASGI server (uvicorn): it runs inside the event loop the server already
owns (``AppRunner``/``TCPSite``), with no signal handlers or process model of its own to
reconcile with gRPC's, and binds with ``SO_REUSEPORT`` for the workers of ``--workers N``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator

import grpc
from aiohttp import web

from cnnserve.server import errors
from cnnserve.server.dataplane import DataPlane
from cnnserve.server.errors import to_status
from cnnserve.server.metrics import Metrics
from cnnserve.server.rest import FOUND, cnnserve_v1, kserve_v2
from cnnserve.server.security.restrictions import http_group, http_message, restrictions
from cnnserve.server.security.tls import CertificateStore
from cnnserve.server.services.classifier import Classifier
from cnnserve.server.services.policy import PolicyService
from cnnserve.server.settings import Settings
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import CURRENT
from cnnserve.server.tracing.record import Trace

# Triton's HTTP status for each error (its HttpCodeFromError); RESOURCE_EXHAUSTED, which Triton's
# HTTP front end does not produce, is 429, HTTP's "too many requests".
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.CANCELLED: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The routes that run a model: the ones a request is traced on.
TRACED = frozenset(("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
                    "/v1/models/{name}/classify", "/v1/models/{name}/policy"))  # fmt: skip


def build(
    settings: Settings, plane: DataPlane, metrics: Metrics, classifier: Classifier, policies: PolicyService
) -> web.Application:
    limit = _Limit(settings.max_concurrent_rpcs)
    restricted = restrictions(settings.http_restricted_api)

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Each call counted as on gRPC (in flight, duration, status code; the route as ``rpc``),
        and any error turned into its status and ``{"error": message}``."""
        started = time.perf_counter()
        name = request.match_info.get("name", "")
        # The request's one lookup of its model; its handler reads what was found.
        found = plane.find(name) if name else None
        request[FOUND] = found
        model = found.name if found is not None else ""
        route = request.match_info.route.resource
        rpc = route.canonical if route is not None else "unmatched"
        code = grpc.StatusCode.CANCELLED
        message = ""
        trace = None
        if plane.tracer.table.active and found is not None and rpc in TRACED:
            trace = plane.tracer.begin(model, "http", rpc, record.HTTP_RECV_START, request.headers.get("traceparent"))
            if trace is not None:
                token = CURRENT.set(trace)
        with metrics.inflight(model), plane.handling(found), limit.slot(request):
            try:
                # Only when groups are restricted: the path is not classified on every request.
                restriction = restricted.get(http_group(request.method, request.path)) if restricted else None
                if restriction is not None and not restriction.allows(request.headers.get(restriction.header)):
                    raise Forbidden(http_message(restriction))
                limit.check()
                response = await handler(request)
                code = grpc.StatusCode.OK
            except web.HTTPException as exc:  # aiohttp's own refusals: unknown path or method, body too large
                code, response = _refusal(exc, settings)
            except Forbidden as exc:
                code, response = grpc.StatusCode.PERMISSION_DENIED, web.json_response({"error": str(exc)}, status=403)
            except Exception as exc:
                code, message = to_status(exc, rpc)
                response = web.json_response({"error": message}, status=HTTP_STATUS.get(code, 500))
            finally:
                if route is not None:
                    metrics.observe_request(model, rpc, code.name, time.perf_counter() - started)
        if plane.draining:  # shutting down: the client should reconnect elsewhere
            response.force_close()
        if trace is not None:
            CURRENT.reset(token)
            await _sent(request, response, trace)
            plane.tracer.finish(trace, code.name, message)
        return response

    app = web.Application(middlewares=[observed], client_max_size=settings.max_message_bytes)
    app.add_routes(kserve_v2.routes(plane))
    app.add_routes(cnnserve_v1.routes(classifier, policies))
    return app


async def _sent(request: web.Request, response: web.StreamResponse, trace: Trace) -> None:
    """Send a traced request's reply here rather than after the middleware (aiohttp's prepare
    and write_eof do nothing the second time), so that its trace can say when it was sent."""
    trace.stamp(record.HTTP_SEND_START)
    try:
        await response.prepare(request)
        await response.write_eof()
    except (ConnectionError, RuntimeError) as exc:  # the caller went away: the trace says so
        trace.error = trace.error or f"reply not sent: {exc}"
    trace.stamp(record.HTTP_SEND_END)


class Forbidden(Exception):
    """A request of a restricted group without its header (Triton answers 403)."""


class _Limit:
    """At most ``most`` HTTP requests in progress (``--max-concurrent-rpcs``, counted apart from
    gRPC's), beyond which 429; 0 = no limit. Health checks are never refused: a probe that fails
    under load would have the orchestrator restart a server that is merely busy."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.active = 0

    @contextlib.contextmanager
    def slot(self, request: web.Request) -> Iterator[None]:
        counted = not request.path.startswith("/v2/health/")
        self.active += counted
        try:
            yield
        finally:
            self.active -= counted

    def check(self) -> None:
        if self.most and self.active > self.most:
            raise errors.ResourceExhausted(
                f"concurrent request limit exceeded: {self.most:,} HTTP requests in progress "
                f"(--max-concurrent-rpcs {self.most}); retry later"
            )


def _refusal(exc: web.HTTPException, settings: Settings) -> tuple[grpc.StatusCode, web.Response]:
    """aiohttp's refusal, with its status, as ``{"error": ...}`` like every other error."""
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED  # what gRPC answers for a message over the limit
        message = f"request body larger than max_message_bytes {settings.max_message_bytes:,} (--max-message-bytes)"
    else:
        code = grpc.StatusCode.NOT_FOUND if exc.status == 404 else grpc.StatusCode.INVALID_ARGUMENT
        message = exc.reason
    response = web.json_response({"error": message}, status=exc.status)
    if "Allow" in exc.headers:  # 405 says which methods the path takes
        response.headers["Allow"] = exc.headers["Allow"]
    return code, response


class HttpServer:
    """The application served on ``host:port`` until :meth:`stop`."""

    def __init__(self, app: web.Application, *, grace_seconds: float) -> None:
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=grace_seconds)
        self.port = 0

    async def start(
        self, host: str, port: int, *, reuse_port: bool = False, tls: CertificateStore | None = None
    ) -> int:
        await self.runner.setup()
        context = tls.ssl_context() if tls else None
        site = web.TCPSite(self.runner, host, port, reuse_port=reuse_port or None, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise OSError(exc.errno, f"cannot serve HTTP on {host}:{port}: {exc.strerror}") from exc
        self.port = int(self.runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop accepting, give the requests in progress up to the grace period, close."""
        await self.runner.cleanup()
