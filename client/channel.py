"""What every client subcommand shares to reach a server: the channel with its message limits,
and failed calls turned into one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from cnnserve.cli import CommandError

MIB = 1024 * 1024
# gRPC's default 4 MiB receive limit holds fewer than seven float32 224x224x3 images; the server's
# default limit is 64 MiB too.
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]


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
    with grpc.insecure_channel(server, options=CHANNEL_OPTIONS) as ch:
        yield ch


def aio_channel(server: str, *, own_connection: bool = False) -> grpc.aio.Channel:
    """An asyncio channel with the same limits (``async with`` it). ``own_connection``: a TCP
    connection of its own, not shared with the process's other channels to the same server (a
    server of several workers spreads connections, not calls, over them)."""
    options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)] if own_connection else CHANNEL_OPTIONS
    return grpc.aio.insecure_channel(server, options=options)
