"""The protocol-agnostic data plane: what every front end (KServe V2, cnnserve.v1) calls.

One pass: a front end looks the request's model up once (:meth:`DataPlane.find`, which its
metrics wrapper does, so the request is counted under its model), resolves the version it runs on
from that (:meth:`DataPlane.resolve`), checks the tensors' names, datatypes and shapes against it
before decoding them (:meth:`DataPlane.check_tensors`, which gives the item count), and hands the
decoded tensors with that model to :meth:`DataPlane.infer`. A bad request fails alone, with a
message that names the field and the expectation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import cnnserve
from cnnserve.repository import ModelConfig
from cnnserve.server import errors
from cnnserve.server.model_manager import ModelManager, ServedModel, State
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import CURRENT
from cnnserve.server.tracing.tracer import Tracer

SERVER_NAME = "cnnserve"
SERVER_VERSION = cnnserve.__version__
# What ServerMetadata advertises (Triton's names for the extensions cnnserve implements).
EXTENSIONS = ("classification", "model_repository", "statistics", "trace", "logging")


class _Handling:
    """The context manager of ``DataPlane.handling`` (a class: it runs on every request)."""

    __slots__ = ("model",)

    def __init__(self, model: ServedModel | None) -> None:
        self.model = model

    def __enter__(self) -> None:
        if self.model is not None:
            self.model.inflight += 1

    def __exit__(self, *exc_info: object) -> None:
        if self.model is not None:
            self.model.inflight -= 1


class DataPlane:
    def __init__(self, models: ModelManager, tracer: Tracer | None = None) -> None:
        self.models = models
        self.tracer = tracer or Tracer()
        self.loaded = False  # set once the repository has been loaded
        self.draining = False  # set on SIGTERM: no new work
        # Set on SIGTERM with --drain-seconds: not ready (out of a balancer's rotation) while the
        # requests a balancer still sends are answered, before draining begins.
        self.leaving = False
        # One worker of several: whether every other worker is ready too (the supervisor says);
        # health and readiness speak for the whole server, whichever worker a probe reaches.
        self.peers_ready = True

    def find(self, name: str) -> ServedModel | None:
        """A request's one lookup of its model by name: the served version, None when unknown."""
        return self.models.find(name)

    def handling(self, found: ServedModel | None) -> _Handling:
        """Count a request for the model ``find`` gave while a front end handles it: the batcher
        runs a request inline only while it is its model's only one."""
        return _Handling(found)

    def resolve(
        self, found: ServedModel | None, name: str, version: str = "", *, admitted: bool = False
    ) -> ServedModel:
        """The ready version a request for ``name`` runs on, from what ``find`` gave (no second
        lookup): NOT_FOUND for an unknown name or version, UNAVAILABLE while it is not ready or the
        server is draining. ``admitted``: the caller accepted the request before draining began
        (Classify and Policy admit first, then decode), so it is let through: an accepted request
        must be answered."""
        if self.draining and not admitted:
            raise errors.Unavailable("server is shutting down and takes no new requests")
        return self.models.ready_version(found, name, version)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once loading is done, while not draining, with at least one model ready.

        A model that failed to load does not make the server unready (its ModelReady says so),
        so one broken entry cannot take every healthy model out of a load balancer. In
        ``explicit`` mode with no model to load at start, ready once listening: models come by
        RepositoryModelLoad.
        """
        serving = any(m.ready for m in self.models.models.values()) or not self.models.expected_at_start
        return self.loaded and not self.draining and not self.leaving and self.peers_ready and serving

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.models.get(name, version).ready and not (self.draining or self.leaving) and self.peers_ready

    def config(self, name: str, version: str = "") -> ModelConfig:
        model = self.models.get(name, version)
        if model.config is None:
            raise errors.Unavailable(f"model {name!r} failed to load: {model.reason}")
        return model.config

    def check_tensors(self, config: ModelConfig, inputs: Mapping[str, tuple[str, Sequence[int]]]) -> int:
        """Check each input's name, V2 datatype and shape (with the batch axis) against
        config.json, before anything is decoded: a request's size is then bounded by the model's
        own; return the batch size."""
        if len(inputs) != len(config.inputs) or any(t.name not in inputs for t in config.inputs):
            expected = sorted(t.name for t in config.inputs)
            unknown = sorted(set(inputs) - set(expected))
            if unknown:
                raise errors.InvalidArgument(
                    f"inputs: unknown input {unknown[0]!r} for model {config.name!r}; expected {expected}"
                )
            missing = sorted(set(expected) - set(inputs))
            raise errors.InvalidArgument(f"inputs: model {config.name!r} needs input {missing[0]!r}")
        batch_sizes = set()
        for spec in config.inputs:
            name = spec.name
            datatype, shape = inputs[name][0], tuple(inputs[name][1])
            if any(d < 0 for d in shape):
                raise errors.InvalidArgument(f"input {name!r}: shape {list(shape)} has a negative dimension")
            if datatype != spec.datatype:
                wanted = f"model {config.name!r} expects {spec.datatype}"
                raise errors.InvalidArgument(f"input {name!r}: datatype {datatype}, {wanted}")
            if len(shape) != len(spec.shape) + 1:
                raise errors.InvalidArgument(
                    f"input {name!r}: shape {list(shape)} has rank {len(shape)}, expected "
                    f"{len(spec.shape) + 1}: [batch, {', '.join(map(str, spec.shape))}]"
                )
            if shape[1:] != spec.shape:
                raise errors.InvalidArgument(
                    f"input {name!r}: shape {list(shape)}, expected [batch, {', '.join(map(str, spec.shape))}]"
                )
            batch_sizes.add(shape[0])
        if len(batch_sizes) != 1:
            raise errors.InvalidArgument(f"inputs: batch sizes differ between inputs: {sorted(batch_sizes)}")
        (batch,) = batch_sizes
        if batch < 1:
            raise errors.InvalidArgument("inputs: empty batch (shape [0, ...]); send at least one item")
        if batch > config.max_batch_size:
            raise errors.InvalidArgument(
                f"inputs: batch of {batch} exceeds max_batch_size {config.max_batch_size} of model {config.name!r}"
            )
        return batch

    async def infer(
        self, model: ServedModel, inputs: dict[str, np.ndarray], items: int, *, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Queue ``inputs`` (checked against ``model``: ``items`` on their leading axis) in the
        model's batcher and return the outputs of exactly those items; stamped on the request's
        trace where its front end sampled it."""
        assert model.batcher is not None
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        trace = CURRENT.get()
        if trace is None:
            outputs = await model.batcher.infer(inputs, items=items, deadline=deadline)
        else:
            trace.version = str(model.version)
            trace.stamp(record.REQUEST_START)
            try:
                outputs = await model.batcher.infer(inputs, items=items, deadline=deadline, trace=trace)
            finally:
                trace.stamp(record.REQUEST_END)
        model.last_inference_ms = int(time.time() * 1000)
        return outputs

    def trace_settings(self, model: str = "", given: Mapping[str, Any] | None = None) -> dict[str, str | list[str]]:
        """The trace settings of ``model`` (or the server's), after applying ``given`` where a
        client changes them: Triton's trace-setting API, whichever protocol it came by."""
        if model and self.models.find(model) is None:
            raise errors.NotFound(f"trace settings: unknown model {model!r}")
        if given is None:
            return self.tracer.settings(model).to_api()
        try:
            return self.tracer.change(given, model).to_api()
        except ValueError as exc:
            raise errors.InvalidArgument(str(exc)) from None

    def index(self, ready_only: bool = False) -> list[ServedModel]:
        return [m for m in self.models.index() if m.ready or not ready_only]

    async def load(self, name: str) -> None:
        """RepositoryModelLoad: load or reload ``name`` (``explicit`` model control only)."""
        await self.models.load(name)

    async def unload(self, name: str) -> None:
        """RepositoryModelUnload: unload ``name`` once its accepted requests are answered."""
        await self.models.unload(name)

    def statistics(self, name: str = "", version: str = "") -> list[ServedModel]:
        """The versions that serve or drain (Triton reports none for unloaded or failed ones)."""
        if name:
            return [self.models.get(name, version)]
        return [m for m in self.models.index() if m.state in (State.READY, State.UNLOADING)]
