"""What every client subcommand shares to reach a server: the channel with its message limits,
client-side balancing over the addresses a target resolves to, and failed calls turned into
one-line errors.

``--server`` is a gRPC target: ``host:port`` (gRPC's default: one connection, to the first address
the name resolves to that answers), or a target with a resolver scheme, which may resolve to
several servers: ``dns:///cnnserve-headless.default.svc.cluster.local:8001`` (a Kubernetes
headless Service: one A record per ready pod, re-resolved as pods come and go) or
``ipv4:10.0.0.1:8001,10.0.0.2:8001``. Those get ``round_robin``: a connection to every address,
calls spread over the ready ones in turn.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from cnnserve.errors import CommandError

MIB = 1024 * 1024
# gRPC's default 4 MiB receive limit holds fewer than seven float32 224x224x3 images; the server's
# default limit is 64 MiB too.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]
# Resolver schemes whose targets may name several servers; gRPC's default policy (pick_first)
# would send every call to one of them.
BALANCED_SCHEMES = ("dns:", "ipv4:", "ipv6:")
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def balanced(server: str) -> bool:
    """Whether ``server`` names its resolver (``dns:///name:port``, ``ipv4:a:p,b:p``, ...), and so
    gets round_robin over every address it resolves to."""
    return server.lower().startswith(BALANCED_SCHEMES)


def channel_options(server: str, *, own_connection: bool = False) -> list[tuple[str, int | str]]:
    """The options of a channel to ``server``: the message limits, round_robin for a balanced
    target, and with ``own_connection`` connections not shared with the process's other channels."""
    options: list[tuple[str, int | str]] = list(CHANNEL_OPTIONS)
    if balanced(server):
        options.append(("grpc.service_config", ROUND_ROBIN))
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return options


class ClientError(CommandError):
    """A failure the command reports in one line (exit status 1)."""


def rpc_error(exc: grpc.RpcError, server: str) -> ClientError:
    """One line for a failed call; a server that is not there is said so plainly."""
    code, details = exc.code(), exc.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "refused" in details.lower()):
        return ClientError(f"cannot reach a server at {server} (is `cnnserve serve` running?): {details}")
    return ClientError(f"{code.name}: {details}")


@dataclass(frozen=True)
class Security:
    """How the client subcommands reach a server that asks for more than clear text: TLS (and a
    client certificate for mutual TLS), and headers sent with every call (restricted groups)."""

    tls: bool = False
    ca: bytes | None = None  # None: the system's CAs
    cert: bytes | None = None
    key: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)


_security = Security()


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--header``, for every client subcommand."""
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="connect with TLS, trusting this CA's certificates (PEM); with --tls or a client "
                             "certificate and no CA, the system's")  # fmt: skip
    parser.add_argument("--tls", action="store_true", help="connect with TLS (implied by the other --tls-* flags)")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate (PEM), for a server that asks (mTLS)")
    parser.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    parser.add_argument("--header", action="append", default=[], metavar="KEY=VALUE",
                        help="send this header with every call, e.g. triton-grpc-protocol-infer-key=VALUE for a "
                             "restricted group; repeatable")  # fmt: skip


def configure(args: argparse.Namespace) -> None:
    """Take the subcommand's security flags for every channel it opens (see
    :func:`add_security_arguments`); files and headers are checked here, naming the flag."""
    global _security

    def read(path: str | None, flag: str) -> bytes | None:
        if not path:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ClientError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None

    if bool(getattr(args, "tls_cert", None)) != bool(getattr(args, "tls_key", None)):
        raise ClientError("--tls-cert and --tls-key: give both or neither")
    headers = []
    for text in getattr(args, "header", None) or []:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ClientError(f"--header {key.strip() or text!r}...: expected KEY=VALUE")
        headers.append((key.strip().lower(), value))
    ca, cert = read(getattr(args, "tls_ca", None), "--tls-ca"), read(getattr(args, "tls_cert", None), "--tls-cert")
    _security = Security(
        tls=bool(getattr(args, "tls", False) or ca or cert),
        ca=ca,
        cert=cert,
        key=read(getattr(args, "tls_key", None), "--tls-key"),
        headers=tuple(headers),
    )


@contextmanager
def channel(server: str) -> Iterator[grpc.Channel]:
    credentials, options = _security.credentials(), channel_options(server)
    with (
        grpc.secure_channel(server, credentials, options=options)
        if credentials
        else grpc.insecure_channel(server, options=options)
    ) as ch:
        yield grpc.intercept_channel(ch, _Headers(_security.headers)) if _security.headers else ch


def aio_channel(server: str, *, own_connection: bool = False) -> grpc.aio.Channel:
    """An asyncio channel with the same limits (``async with`` it). ``own_connection``: a TCP
    connection of its own, not shared with the process's other channels to the same server (a
    server of several workers spreads connections, not calls, over them)."""
    credentials, options = _security.credentials(), channel_options(server, own_connection=own_connection)
    interceptors = [_AioHeaders(_security.headers)] if _security.headers else None
    if credentials:
        return grpc.aio.secure_channel(server, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(server, options=options, interceptors=interceptors)


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, headers: tuple[tuple[str, str], ...]) -> None:
        self.method, self.timeout, self.credentials = base.method, base.timeout, base.credentials
        self.wait_for_ready, self.compression = base.wait_for_ready, base.compression
        self.metadata = [*(base.metadata or ()), *headers]


class _Headers(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the headers to every call of a synchronous channel."""

    def __init__(self, headers: tuple[tuple[str, str], ...]) -> None:
        self.headers = headers

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(_Details(details, self.headers), request)

    def intercept_unary_stream(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(_Details(details, self.headers), request)


class _AioHeaders(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the headers to every unary call of an asyncio channel."""

    def __init__(self, headers: tuple[tuple[str, str], ...]) -> None:
        self.headers = headers

    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self.headers)
        return await continuation(
            grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                       details.wait_for_ready),
            request,
        )  # fmt: skip
