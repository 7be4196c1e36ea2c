"""Classification of encoded images: the protocol-agnostic side of ``cnnserve.v1`` Classify.

Images are decoded and preprocessed (:mod:`cnnserve.images`) in a thread pool of their own
(Pillow releases the GIL while it decodes), then go through
:meth:`cnnserve.server.dataplane.DataPlane.infer`, the same path and the same dynamic batcher as KServe V2
requests for that model. A request of more images than the model's
``max_batch_size`` is split into several batcher requests, all queued at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from cnnserve.images import ImageError, ImagePipeline
from cnnserve.repository import ModelConfig
from cnnserve.server import errors
from cnnserve.server.dataplane import DataPlane
from cnnserve.server.model_manager import ServedModel
from cnnserve.server.services.admission import Admission, queued
from cnnserve.server.tracing import record
from cnnserve.server.tracing.context import stamp


@dataclass(frozen=True)
class ClassScore:
    index: int
    label: str  # "" where the model has no labels
    probability: float  # softmax over every class


@dataclass(frozen=True)
class Classified:
    model: ServedModel
    results: list[list[ClassScore]]  # per image, best first


def softmax_top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the ``k`` most probable classes of each row of ``logits``
    (N, C), best first, ties in index order; probabilities are the softmax over all C classes."""
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    p = np.exp(x)
    p /= p.sum(axis=1, keepdims=True)
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(p, top, axis=1)


class Classifier:
    def __init__(self, plane: DataPlane, *, max_images: int, max_pixels: int, threads: int = 0) -> None:
        self.plane = plane
        self.max_images = max_images
        self.max_pixels = max_pixels
        self._executor = ThreadPoolExecutor(threads or os.cpu_count() or 1, thread_name_prefix="decode")
        self._pipelines: dict[tuple[str, int], ImagePipeline] = {}
        self.admission = Admission(plane)  # accepted calls whose images are not yet queued

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def pipeline(self, config: ModelConfig) -> ImagePipeline:
        """The model's image preprocessing; INVALID_ARGUMENT for a model that is no classifier."""
        key = (config.name, config.version)
        if key not in self._pipelines:
            if config.task != "classification" or not config.preprocessing:
                raise errors.InvalidArgument(
                    f"model_name: model {config.name!r} is a {config.task} model, not an image classifier; "
                    "Classify needs a model whose config.json says task classification"
                )
            spec = config.inputs[0]
            try:
                pipeline = ImagePipeline.from_config(config.preprocessing, spec.datatype)
            except (KeyError, ValueError) as exc:
                raise errors.Internal(f"model {config.name!r}: config.json cannot be followed: {exc}") from None
            if len(config.inputs) != 1 or pipeline.item_shape != spec.shape:
                raise errors.Internal(
                    f"model {config.name!r}: preprocessing makes {list(pipeline.item_shape)} but input "
                    f"{spec.name!r} takes {list(spec.shape)}"
                )
            self._pipelines[key] = pipeline
        return self._pipelines[key]

    async def classify(
        self,
        found: ServedModel | None,
        name: str,
        version: str,
        images: Sequence[bytes],
        top_k: int,
        *,
        timeout: float | None = None,
    ) -> Classified:
        """The top ``top_k`` classes of each image, with the model's labels; ``found``: what the
        data plane's ``find(name)`` gave."""
        started = time.monotonic()
        with self.admission.admit():
            model, config, parts = await self._admit(found, name, version, images, top_k, started, timeout)
        outputs = await asyncio.gather(*parts)
        logits = np.concatenate([part[config.outputs[0].name] for part in outputs])
        indices, probabilities = softmax_top_k(logits, top_k)
        labels = config.labels
        results = [
            [ClassScore(int(i), labels[i] if i < len(labels) else "", float(p)) for i, p in zip(row, ps, strict=True)]
            for row, ps in zip(indices, probabilities, strict=True)
        ]
        return Classified(model, results)

    async def drain(self) -> None:
        await self.admission.drain()

    async def _admit(
        self,
        found: ServedModel | None,
        name: str,
        version: str,
        images: Sequence[bytes],
        top_k: int,
        started: float,
        timeout: float | None,
    ) -> tuple[ServedModel, ModelConfig, list[asyncio.Task[dict[str, np.ndarray]]]]:
        """Check, decode and queue the request; return the futures of its batcher requests."""
        model = self.plane.resolve(found, name, version, admitted=True)
        config = model.config
        assert config is not None
        pipeline = self.pipeline(config)
        if not images:
            raise errors.InvalidArgument("images: empty request; send at least one PNG or JPEG image")
        if len(images) > self.max_images:
            raise errors.InvalidArgument(
                f"images: {len(images)} images, more than max_images_per_request {self.max_images}; "
                "split them over several requests"
            )
        classes = config.outputs[0].shape[-1]
        if not 1 <= top_k <= classes:
            raise errors.InvalidArgument(f"top_k: {top_k}; expected 1 to {classes}, the classes of model {name!r}")
        stamp(record.IMAGE_DECODE_START)
        batch = await self._preprocess(pipeline, images)
        stamp(record.IMAGE_DECODE_END)
        if timeout is not None:
            timeout = max(timeout - (time.monotonic() - started), 0.0)
        # Requests of more images than max_batch_size go as several batcher requests.
        size, input_name = config.max_batch_size, config.inputs[0].name
        # The pipeline made each image the input's item shape and datatype: checked by construction.
        parts = await queued(
            [
                self.plane.infer(model, {input_name: batch[i : i + size]}, len(batch[i : i + size]), timeout=timeout)
                for i in range(0, len(batch), size)
            ]
        )
        return model, config, parts

    async def _preprocess(self, pipeline: ImagePipeline, images: Sequence[bytes]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(self._executor, pipeline, data, i, self.max_pixels) for i, data in enumerate(images)
        ]
        # Every job is awaited, so none fails unobserved; the first bad image (by index) is reported.
        done = await asyncio.gather(*jobs, return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, ImageError):
                raise errors.InvalidArgument(str(outcome)) from None
            if isinstance(outcome, BaseException):
                raise outcome
        return np.stack(done)  # type: ignore[arg-type]
