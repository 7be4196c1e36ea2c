"""cnnserve: what the server, the clients and the exporter share.

The V2 wire codec and its datatype table, the model repository's format, the rules of Go and the
policy network's feature planes, image preprocessing, the generated gRPC stubs, command-line
tables, and the ``cnnserve`` console script that dispatches to the three sides
(:mod:`cnnserve.builders`, :mod:`cnnserve.server`, :mod:`cnnserve.client`, each in a folder of its
own at the top of the tree: setup.py maps them into this package). The modules of this folder
import none of the three, nor torch or matplotlib.
"""

from __future__ import annotations

from importlib import metadata

try:
    # One version string, pyproject.toml's, read from the installed package's metadata.
    __version__ = metadata.version("cnnserve")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
