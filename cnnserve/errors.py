"""The error every subcommand reports the same way: one line on stderr, exit status 1.

Each side turns its own failures into :class:`CommandError` (or a subclass, like the clients'
``ClientError``); the command line (:mod:`cnnserve.cli`) prints it. It lives apart from the
command line so that the sides need not import the dispatcher that imports them.
"""

from __future__ import annotations


class CommandError(Exception):
    """A failure a subcommand reports in one line (exit status 1)."""
