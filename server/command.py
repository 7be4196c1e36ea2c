"""``cnnserve serve``: the settings from the flags and the environment, then one server in this
process (:mod:`cnnserve.server.app`) or a supervisor and its workers
(:mod:`cnnserve.server.parallel.supervisor`)."""

from __future__ import annotations

import argparse
import dataclasses

from cnnserve.errors import CommandError
from cnnserve.server.app import run
from cnnserve.server.settings import Settings, SettingsError


def main(args: argparse.Namespace) -> int:
    """Run the server the flags (those of ``settings.add_arguments``) describe; its exit status."""
    try:
        settings = Settings.from_args(args)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    if settings.workers != 1:
        # Only a multi-worker server needs the supervisor's module.
        from cnnserve.server.parallel import supervisor

        workers = supervisor.plan(settings)
        if workers is None:
            return 1  # refused, the reason logged
        if workers > 1:
            return supervisor.supervise(settings, workers)
        settings = dataclasses.replace(settings, workers=1)  # `auto` came to one
    return run(settings)
