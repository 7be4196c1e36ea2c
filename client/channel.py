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

import json
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from cnnserve.cli import CommandError

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


@contextmanager
def channel(server: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server, options=channel_options(server)) as ch:
        yield ch


def aio_channel(server: str, *, own_connection: bool = False) -> grpc.aio.Channel:
    """An asyncio channel with the same limits (``async with`` it). ``own_connection``: a TCP
    connection of its own, not shared with the process's other channels to the same server (a
    server of several workers spreads connections, not calls, over them)."""
    return grpc.aio.insecure_channel(server, options=channel_options(server, own_connection=own_connection))
