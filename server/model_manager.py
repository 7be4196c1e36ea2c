"""The served models: one ONNX Runtime runner and one dynamic batcher per repository entry.

Loading happens after the gRPC port is open (so that liveness answers while a 550 MB VGG loads);
a model is reported ready only once it is warmed up at every preferred batch size. An entry that
fails to load is kept, not ready, with its reason, while the others serve.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field

from cnnserve.repository import ModelConfig, scan
from server import errors
from server.batching import DynamicBatcher
from server.metrics import Metrics
from server.runtime.devices import cuda_provider_options
from server.runtime.runner import ModelRunner
from server.settings import Settings

log = logging.getLogger("cnnserve.models")


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADING = "unloading"


@dataclass
class ServedModel:
    name: str
    config: ModelConfig | None = None
    state: State = State.LOADING
    reason: str = ""
    runner: ModelRunner | None = None
    batcher: DynamicBatcher | None = None
    load_seconds: float = 0.0
    last_inference_ms: int = 0
    inflight: int = 0  # requests for it inside the server's handlers now (the front ends count them)

    @property
    def version(self) -> int:
        return self.config.version if self.config else 0

    @property
    def ready(self) -> bool:
        return self.state is State.READY


@dataclass
class ModelManager:
    settings: Settings
    metrics: Metrics
    models: dict[str, ServedModel] = field(default_factory=dict)

    def get(self, name: str, version: str = "") -> ServedModel:
        """The model ``name`` at ``version`` ("" = the one served), or NOT_FOUND / UNAVAILABLE."""
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise errors.NotFound(f"model_name: unknown model {name!r}; this server has: {known}")
        if version and version != str(model.version):
            raise errors.NotFound(
                f"model_version: {name!r} has no version {version!r}; version {model.version} is served"
            )
        return model

    def get_ready(self, name: str, version: str = "") -> ServedModel:
        model = self.get(name, version)
        if not model.ready or model.batcher is None:
            why = f": {model.reason}" if model.reason else ""
            raise errors.Unavailable(f"model {name!r} is not ready ({model.state.value}{why})")
        return model

    async def load_all(self) -> None:
        """Load every entry of the repository (all at once: ONNX Runtime builds sessions in threads)."""
        configs, failures = scan(self.settings.repo, self.settings.batching_overrides())
        wanted = set(self.settings.models)
        if wanted:
            missing = wanted - {c.name for c in configs} - set(failures)
            for name in sorted(missing):
                failures[name] = f"not found in repository {self.settings.repo}"
            configs = [c for c in configs if c.name in wanted]
            failures = {n: r for n, r in failures.items() if n in wanted}
        for name, reason in failures.items():
            self._fail(ServedModel(name), reason)
        for config in configs:
            self.models[config.name] = ServedModel(config.name, config)
        await asyncio.gather(*(self._load(self.models[c.name]) for c in configs))

    async def _load(self, model: ServedModel) -> None:
        assert model.config is not None
        config = model.config
        started = time.perf_counter()
        try:
            runner = await asyncio.to_thread(
                ModelRunner,
                config,
                device=self.settings.device,
                intra_op_threads=self.settings.intra_op_threads,
                inter_op_threads=self.settings.inter_op_threads,
                instances=self.settings.instances,
                spinning=self.settings.ort_spinning == "on",
                batch_shapes=self.settings.batch_shapes,
                cuda_options=cuda_provider_options(self.settings),
                cuda_graphs=self.settings.cuda_graphs == "on",
            )
        except Exception as exc:
            self._fail(model, f"{type(exc).__name__}: {exc}")
            return
        model.runner = runner
        try:
            await runner.warmup(config.preferred_batch_sizes or (1,))
            lone = await runner.lone_compute_seconds()
            inline = lone * 1e6 <= self.settings.inline_compute_us
            if inline:
                await asyncio.to_thread(runner.prepare_inline)
        except Exception as exc:
            runner.close()
            self._fail(model, f"warm-up failed: {type(exc).__name__}: {exc}")
            return
        model.batcher = DynamicBatcher(
            config.name,
            runner.run,
            # Where a batch is cut and how it is padded: one decision, the runner's.
            max_batch_size=runner.shapes.max_batch_size,
            max_queue_delay_us=config.max_queue_delay_us,
            preferred_batch_sizes=runner.shapes.preferred,
            max_queue_size=self.settings.max_queue_size,
            max_queue_bytes=self.settings.max_queue_bytes,
            concurrency=runner.instances,
            observer=self.metrics,
            run_parts=runner.run_parts,
            run_inline=runner.run_inline if inline else None,
            alone=lambda: model.inflight <= 1,
        )
        model.load_seconds = time.perf_counter() - started
        model.state = State.READY
        self.metrics.add_model(config.name)
        self._publish(model)
        log.info(
            "model %s version %d ready on %s in %.1fs (max batch %d, preferred %s, %s)",
            config.name,
            config.version,
            runner.provider,
            model.load_seconds,
            config.max_batch_size,
            list(config.preferred_batch_sizes),
            runner.shapes.describe(),
        )
        log.info(
            "model %s: a lone request computes in %.0f us, so it %s",
            config.name,
            lone * 1e6,
            "runs inline on the event loop"
            if inline
            else f"goes to a worker thread (inline up to --inline-compute-us {self.settings.inline_compute_us})",
        )
        if runner.provider_options:
            log.info("model %s: %s options %s", config.name, runner.provider, runner.provider_options_label())

    def _fail(self, model: ServedModel, reason: str) -> None:
        model.state, model.reason = State.FAILED, reason
        self.models[model.name] = model
        self._publish(model)
        log.error("model %s failed to load: %s", model.name, reason)

    def _publish(self, model: ServedModel) -> None:
        config = model.config
        facts = config.facts if config else {}
        self.metrics.set_model_info(
            model=model.name,
            version=str(model.version) if config else "",
            architecture=config.architecture if config else "",
            weight_layers=int(facts.get("weight_layers", 0)),
            parameters=int(facts.get("parameters", 0)),
            macs=int(facts.get("macs", 0)),
            provider=model.runner.provider if model.runner else "",
            batch_shapes=model.runner.shapes.label() if model.runner else "",
            provider_options=model.runner.provider_options_label() if model.runner else "",
            trained=bool(config.trained) if config else False,
            state=model.state.value,
            reason=model.reason,
        )

    async def close(self) -> None:
        """Drain every batcher (each accepted request is answered), then free the sessions."""
        for model in self.models.values():
            if model.state is State.READY:
                model.state = State.UNLOADING
        await asyncio.gather(*(m.batcher.close(drain=True) for m in self.models.values() if m.batcher))
        for model in self.models.values():
            if model.runner is not None:
                model.runner.close()
