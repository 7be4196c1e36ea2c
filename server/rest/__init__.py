"""The HTTP front end: KServe V2 REST on ``--http-port``, as Triton serves it."""

from aiohttp import web

from cnnserve.server.model_manager import ServedModel

FOUND = web.RequestKey[ServedModel | None]("model")
"""Where a request keeps the model its path names, as the data plane's ``find`` gave it (the
middleware looks it up once; the handlers read it)."""
