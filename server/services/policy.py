"""Go move probabilities: the protocol-agnostic side of ``cnnserve.v1`` Policy.

A position (a text board, or an SGF record at a move number) becomes the 48 feature planes of
AlphaGo's policy network in a thread pool of its own (off the event loop, so that the loop keeps
serving while a position is read; the record is parsed in Python, the replay and the planes run
in C, the planes without the GIL, so the pool's threads read several positions at once), then
goes through
:meth:`cnnserve.server.dataplane.DataPlane.infer`, the same path and the same dynamic batcher as KServe V2
requests for that model: many games asking at once share one run. The model's 361 probabilities
come back with the illegal points zeroed and the legal ones renormalised.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from cnnserve.go import features, position
from cnnserve.go.coords import POINTS, SIZE
from cnnserve.repository import ModelConfig
from cnnserve.server import errors
from cnnserve.server.dataplane import DataPlane
from cnnserve.server.model_manager import ServedModel
from cnnserve.server.services.admission import Admission, queued
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import stamp

# A record longer than any real game by far; it bounds the work one request can ask for.
MAX_SGF_CHARS = 1 << 20
_LIBERTIES_AFTER = next(f for f in features.FEATURES if f.name == "liberties_after_move")


@dataclass(frozen=True)
class PositionQuery:
    """What a caller asks about: exactly one of ``board`` and ``sgf``."""

    board: str | None = None
    sgf: str | None = None
    move_number: int | None = None  # with sgf; None: the end of the record
    to_move: int | None = None  # BLACK or WHITE; None: from the record (sgf only)


@dataclass(frozen=True)
class PolicyResult:
    model: ServedModel
    position: position.Position
    probabilities: np.ndarray  # (361,) float64, illegal points 0, legal ones summing to 1
    top: list[tuple[int, float]]  # (point, probability), best first
    legal: int  # legal points for the side to move


def read_position(query: PositionQuery) -> tuple[position.Position, np.ndarray, np.ndarray]:
    """The position, its planes (48, 19, 19) float32 and its legal points (361,) bool; raises
    INVALID_ARGUMENT naming the field at fault. Runs in the feature pool."""
    try:
        if query.board is not None:
            if query.move_number is not None:
                raise errors.InvalidArgument("move_number: only with sgf; a text board has no moves to count")
            if query.to_move is None:
                raise errors.InvalidArgument("to_move: required with a text board; expected BLACK or WHITE")
            where = position.from_text(query.board, query.to_move)
        elif query.sgf is not None:
            if len(query.sgf) > MAX_SGF_CHARS:
                raise errors.InvalidArgument(f"sgf: {len(query.sgf):,} characters; at most {MAX_SGF_CHARS:,}")
            where = position.from_sgf(query.sgf, query.move_number, query.to_move)
        else:
            raise errors.InvalidArgument("position: missing; send board (19 text lines) or sgf (a record)")
    except position.PositionError as exc:
        raise errors.InvalidArgument(str(exc)) from None
    planes = features.planes(where.board, where.to_move)
    # A legal move always leaves its stone at least one liberty, and only legal moves light the
    # "liberties after move" planes, so they mark exactly the legal points.
    legal = planes[_LIBERTIES_AFTER.start : _LIBERTIES_AFTER.start + _LIBERTIES_AFTER.count].any(axis=0).ravel()
    return where, planes, legal


def legal_probabilities(probabilities: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """Zero the illegal points and renormalise the rest (float64). Where the model gives every
    legal point zero, they share the mass equally, so a legal move is still offered."""
    p = np.where(legal, probabilities.astype(np.float64), 0.0)
    total = p.sum()
    if total > 0:
        return p / total
    count = int(legal.sum())
    return legal / count if count else p


def top_moves(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` most probable points with a probability above zero, best first, ties in index order."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), float(probabilities[i])) for i in order if probabilities[i] > 0]


class PolicyService:
    def __init__(self, plane: DataPlane, *, threads: int = 0) -> None:
        self.plane = plane
        self._executor = ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="features")
        self.admission = Admission(plane)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def drain(self) -> None:
        await self.admission.drain()

    @staticmethod
    def check_model(config: ModelConfig) -> None:
        """INVALID_ARGUMENT for a model that is no Go policy network."""
        spec = config.inputs[0]
        outputs = config.outputs[0].shape if config.outputs else ()
        if (
            config.task != "policy"
            or len(config.inputs) != 1
            or spec.shape != (features.PLANES, SIZE, SIZE)
            or spec.datatype != "FP32"
            or tuple(outputs) != (POINTS,)
        ):
            raise errors.InvalidArgument(
                f"model_name: model {config.name!r} is a {config.task} model taking {spec.datatype} "
                f"{list(spec.shape)}, not a Go policy network; Policy needs a model whose config.json says task "
                f"policy, with input FP32 [{features.PLANES}, {SIZE}, {SIZE}] and {POINTS} outputs (alphago_policy)"
            )

    async def policy(
        self,
        found: ServedModel | None,
        name: str,
        version: str,
        query: PositionQuery,
        top_k: int,
        *,
        timeout: float | None = None,
    ) -> PolicyResult:
        """Move probabilities for the position ``query`` reads; ``found``: what the data plane's
        ``find(name)`` gave."""
        started = time.monotonic()
        with self.admission.admit():
            model = self.plane.resolve(found, name, version, admitted=True)
            config = model.config
            assert config is not None
            self.check_model(config)
            if not 0 <= top_k <= POINTS:
                raise errors.InvalidArgument(f"top_k: {top_k}; expected 0 to {POINTS}")
            loop = asyncio.get_running_loop()
            stamp(record.PLANES_START)
            where, planes, legal = await loop.run_in_executor(self._executor, read_position, query)
            stamp(record.PLANES_END)
            if timeout is not None:
                timeout = max(timeout - (time.monotonic() - started), 0.0)
            # check_model made sure the planes are the input's item shape and datatype.
            inputs = {config.inputs[0].name: planes[None]}
            (part,) = await queued([self.plane.infer(model, inputs, 1, timeout=timeout)])
        outputs = await part
        probabilities = legal_probabilities(outputs[config.outputs[0].name][0], legal)
        return PolicyResult(model, where, probabilities, top_moves(probabilities, top_k), int(legal.sum()))
