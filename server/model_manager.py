"""The served models: one ONNX Runtime runner and one dynamic batcher per loaded version of each
repository entry, and their lifecycle (Triton's model control modes).

Loading happens after the gRPC port is open (so that liveness answers while a 550 MB VGG loads);
a version is reported ready only once it is warmed up at every preferred batch size. An entry that
fails to load is kept, not ready, with its reason, while the others serve.

A new version (a load call in ``explicit`` mode, a changed entry in ``poll`` mode) is loaded and
warmed beside the serving one; requests switch to it in one step once it is ready, the old
version's batcher answers what it accepted, then its sessions close. A version that fails to load
leaves the serving one as it was. Unloading a model answers its accepted requests first.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnnserve import repository
from cnnserve.repository import ModelConfig, RepositoryError
from cnnserve.server import errors
from cnnserve.server.batching import DynamicBatcher
from cnnserve.server.metrics import Metrics
from cnnserve.server.runtime.devices import cuda_provider_options
from cnnserve.server.runtime.runner import ModelRunner
from cnnserve.server.settings import Settings

log = logging.getLogger("cnnserve.models")

# Triton's words for a load or unload call the model control mode does not take.
CONTROL_REFUSED = "explicit model load / unload is not allowed if polling is enabled"


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADING = "unloading"
    UNLOADED = "unloaded"

    @property
    def triton(self) -> str:
        """The state as Triton's repository index names it."""
        return _TRITON_STATES[self]


_TRITON_STATES = {State.LOADING: "LOADING", State.READY: "READY", State.FAILED: "UNAVAILABLE",
                  State.UNLOADING: "UNLOADING", State.UNLOADED: "UNAVAILABLE"}  # fmt: skip


@dataclass
class ServedModel:
    """One version of one entry, from its loading to its unloading."""

    name: str
    config: ModelConfig | None = None
    state: State = State.LOADING
    reason: str = ""
    runner: ModelRunner | None = None
    batcher: DynamicBatcher | None = None
    load_seconds: float = 0.0
    last_inference_ms: int = 0
    inflight: int = 0  # requests for it inside the server's handlers now (the front ends count them)
    fingerprint: tuple[object, ...] = ()  # the entry's files when it was read (repository.fingerprint)

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
    # name -> the version requests go to; where none serves, the latest attempt (failed, unloaded)
    models: dict[str, ServedModel] = field(default_factory=dict)
    # name -> version -> every version this server has known, for the index and version requests
    versions: dict[str, dict[int, ServedModel]] = field(default_factory=dict)
    # called after each change of what is served (the server republishes its health)
    on_change: Callable[[], Awaitable[None]] | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _attempted: dict[str, tuple[object, ...]] = field(default_factory=dict)  # name -> fingerprint last tried
    _seen: dict[str, tuple[object, ...]] = field(default_factory=dict)  # name -> fingerprint at the last look
    expected_at_start: int = 0  # the entries the model control mode loads at start
    _poller: asyncio.Task[None] | None = None
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)

    # -- finding a model ---------------------------------------------------------------------------

    def find(self, name: str) -> ServedModel | None:
        """The served version of ``name``, or None: a request's one lookup of its model by name
        (what it then runs on is :meth:`ready_version` of this)."""
        return self.models.get(name)

    def get(self, name: str, version: str = "") -> ServedModel:
        """The model ``name`` at ``version`` ("" = the one served), or NOT_FOUND."""
        return self.version_of(self.find(name), name, version)

    def version_of(self, found: ServedModel | None, name: str, version: str) -> ServedModel:
        """``version`` of the model ``find(name)`` gave (``found``), or NOT_FOUND."""
        if found is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise errors.NotFound(f"model_name: unknown model {name!r}; this server has: {known}")
        if version and version != str(found.version):
            other = self.versions.get(name, {}).get(int(version)) if version.isdigit() else None
            if other is None:
                raise errors.NotFound(
                    f"model_version: {name!r} has no version {version!r}; version {found.version} is served"
                )
            return other
        return found

    def ready_version(self, found: ServedModel | None, name: str, version: str = "") -> ServedModel:
        """As :meth:`version_of`, and ready to run (else UNAVAILABLE, with its state and reason)."""
        model = self.version_of(found, name, version)
        if not model.ready or model.batcher is None:
            why = f": {model.reason}" if model.reason and model.reason != model.state.value else ""
            which = f"model {name!r} version {version}" if version else f"model {name!r}"
            raise errors.Unavailable(f"{which} is not ready ({model.state.value}{why})")
        return model

    def index(self) -> list[ServedModel]:
        """Every version known, by name and version: serving, loading, failed and unloaded ones;
        in ``explicit`` mode also the repository's entries never loaded (as unloaded)."""
        known = [m for name in sorted(self.versions) for _, m in sorted(self.versions[name].items())]
        if self.settings.model_control_mode == "explicit":
            with contextlib.suppress(RepositoryError, OSError):
                names = self._entries()
                known += [
                    ServedModel(n, state=State.UNLOADED, reason="unloaded") for n in names if n not in self.models
                ]
        return sorted(known, key=lambda m: (m.name, m.version))

    # -- the lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the model control mode loads at start (all entries at once: ONNX Runtime
        builds sessions in threads); in ``poll`` mode, then follow the repository."""
        s = self.settings
        entries = self._entries()
        names = list(entries)
        if s.model_control_mode == "explicit":
            names = names if "*" in s.load_models else list(s.load_models)
        wanted = set(s.models) if s.models else set(names)
        if s.models:  # --model restricts what may be served in every mode
            for name in sorted(wanted - set(entries)):  # fmt: skip
                self._record_failure(ServedModel(name), f"not found in repository {s.repo}")
        self.expected_at_start = sum(n in wanted for n in names)
        await asyncio.gather(*(self._load_logged(n) for n in names if n in wanted))
        if s.model_control_mode == "poll":
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def load(self, name: str, *, control: bool = True) -> ServedModel:
        """Load ``name``'s newest version, or reload it if its files changed; the serving version
        is replaced only once the new one is ready. ``control``: a RepositoryModelLoad call,
        refused unless the model control mode is ``explicit``."""
        if control and self.settings.model_control_mode != "explicit":
            raise errors.Unavailable(CONTROL_REFUSED)
        async with self._lock(name):
            return await self._load_newest(name)

    async def _load_logged(self, name: str) -> None:
        """Load without a caller to tell: a failure is in the index, the metrics and the log."""
        with contextlib.suppress(errors.ServingError):
            await self.load(name, control=False)

    async def unload(self, name: str, *, control: bool = True) -> None:
        """Unload ``name`` once the requests it accepted are answered (RepositoryModelUnload)."""
        if control and self.settings.model_control_mode != "explicit":
            raise errors.Unavailable(CONTROL_REFUSED)
        async with self._lock(name):
            model = self.models.get(name)
            if model is None:
                if control and name not in self._entries():
                    raise errors.NotFound(
                        f"failed to unload {name!r}: no such model in repository {self.settings.repo}"
                    )
                return  # never loaded: nothing to do, as Triton answers
            self._attempted.pop(name, None)
            if model.ready:
                await self._retire(model)
            elif model.state is not State.UNLOADED:  # failed: forget the failure too
                model.state, model.reason = State.UNLOADED, "unloaded"
                self.metrics.remove_model_info(name, str(model.version) if model.config else "")
            log.info("model %s unloaded", name)
            await self._changed()

    async def close(self) -> None:
        """Drain every batcher (each accepted request is answered), then free the sessions."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        serving = [m for versions in self.versions.values() for m in versions.values() if m.state is State.READY]
        for model in serving:
            model.state = State.UNLOADING
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await asyncio.gather(*(m.batcher.close(drain=True) for m in serving if m.batcher))
        for model in serving:
            if model.runner is not None:
                model.runner.close()

    # -- loading one version -----------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _entries(self) -> dict[str, Path]:
        entries = repository.entries(self.settings.repo, self.settings.model_name)
        return {n: p for n, p in entries.items() if not self.settings.models or n in self.settings.models}

    async def _load_newest(self, name: str) -> ServedModel:
        entry = self._entries().get(name)
        if entry is None:
            raise errors.NotFound(f"failed to load {name!r}: no such model in repository {self.settings.repo}")
        fingerprint = await asyncio.to_thread(repository.fingerprint, entry)
        current = self.models.get(name)
        if current is not None and current.ready and current.fingerprint == fingerprint:
            return current  # nothing changed since it was loaded
        self._attempted[name] = fingerprint
        try:
            config = await asyncio.to_thread(
                repository.load_entry,
                entry,
                self.settings.batching_overrides(),
                single=repository.is_single_entry(self.settings.repo),
                name=self.settings.model_name,
            )
        except (RepositoryError, OSError) as exc:
            self._record_failure(ServedModel(name, fingerprint=fingerprint), str(exc))
            raise errors.InvalidArgument(f"load failed for model {name!r}: {exc}") from None
        model = ServedModel(name, config, fingerprint=fingerprint)
        if current is None or current.version != config.version or not current.ready:
            self.versions.setdefault(name, {})[config.version] = model  # LOADING in the index
        if current is None or not current.ready:
            self.models[name] = model
        self._publish(model)
        reason = await self._warm(model)
        if reason is not None:
            self._record_failure(model, reason)
            raise errors.Unavailable(f"load failed for model {name!r}: version {config.version} is at "
                                     f"UNAVAILABLE state: {reason}")  # fmt: skip
        # The switch: one assignment, between two requests; the old version answers what it holds.
        old = self.models.get(name)
        self.models[name] = model
        self.versions.setdefault(name, {})[config.version] = model
        if old is not None and old is not model and old.ready:
            task = asyncio.get_running_loop().create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            log.info("model %s: version %d serves; version %d answers what it accepted, then unloads", name,
                     model.version, old.version)  # fmt: skip
        await self._changed()
        return model

    async def _warm(self, model: ServedModel) -> str | None:
        """Build the sessions, warm them up and start the batcher; the reason when it fails."""
        assert model.config is not None
        config, s = model.config, self.settings
        started = time.perf_counter()
        try:
            runner = await asyncio.to_thread(
                ModelRunner,
                config,
                device=s.device,
                intra_op_threads=s.intra_op_threads,
                inter_op_threads=s.inter_op_threads,
                # An explicit --instances is for every model; auto takes the model's own count.
                instances=s.instances if s.instances is not None else config.instance_count,
                spinning=s.ort_spinning == "on",
                batch_shapes=s.batch_shapes,
                cuda_options=cuda_provider_options(s),
                cuda_graphs=s.cuda_graphs == "on",
            )
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        model.runner = runner
        try:
            await runner.warmup(config.preferred_batch_sizes or (1,))
            lone = await runner.lone_compute_seconds()
            inline = lone * 1e6 <= s.inline_compute_us
            if inline:
                await asyncio.to_thread(runner.prepare_inline)
        except Exception as exc:
            await asyncio.to_thread(runner.close)
            model.runner = None
            return f"warm-up failed: {type(exc).__name__}: {exc}"
        model.batcher = DynamicBatcher(
            config.name,
            runner.run,
            # Where a batch is cut and how it is padded: one decision, the runner's.
            max_batch_size=runner.shapes.max_batch_size,
            max_queue_delay_us=config.max_queue_delay_us,
            preferred_batch_sizes=runner.shapes.preferred,
            max_queue_size=s.max_queue_size,
            max_queue_bytes=s.max_queue_bytes,
            concurrency=runner.instances,
            observer=self.metrics.observer(str(config.version)),
            run_inline=runner.run_inline if inline else None,
            alone=lambda: model.inflight <= 1,
        )
        model.load_seconds = time.perf_counter() - started
        model.state = State.READY
        self.metrics.add_model(config.name, str(config.version))
        self._publish(model)
        log.info(
            "model %s version %d ready on %s in %.1fs (max batch %d, preferred %s, queue delay %d us, "
            "%d instance%s, %s)",
            config.name,
            config.version,
            runner.provider,
            model.load_seconds,
            config.max_batch_size,
            list(config.preferred_batch_sizes),
            config.max_queue_delay_us,
            runner.instances,
            "" if runner.instances == 1 else "s",
            runner.shapes.describe(),
        )
        log.info(
            "model %s: a lone request computes in %.0f us, so it %s",
            config.name,
            lone * 1e6,
            "runs inline on the event loop"
            if inline
            else f"goes to a worker thread (inline up to --inline-compute-us {s.inline_compute_us})",
        )
        if runner.provider_options:
            log.info("model %s: %s options %s", config.name, runner.provider, runner.provider_options_label())
        return None

    async def _retire(self, model: ServedModel) -> None:
        """Answer what ``model`` accepted, then close its sessions and forget its info series."""
        model.state = State.UNLOADING
        self._publish(model)
        if model.batcher is not None:
            await model.batcher.close(drain=True)
        if model.runner is not None:
            await asyncio.to_thread(model.runner.close)  # waits for its threads: off the event loop
            model.runner = None
        model.state, model.reason = State.UNLOADED, "unloaded"
        self.metrics.remove_model_info(model.name, str(model.version) if model.config else "")
        log.info("model %s version %d unloaded", model.name, model.version)

    def _record_failure(self, model: ServedModel, reason: str) -> None:
        """A version that could not load: in the index with its reason; it serves only where no
        other version of the entry does (so that its readiness says why)."""
        model.state, model.reason = State.FAILED, reason
        current = self.models.get(model.name)
        if current is None or not current.ready:
            self.models[model.name] = model
        serving = current.version if current is not None and current.ready else None
        if model.version != serving:  # the serving record keeps its place in the index
            self.versions.setdefault(model.name, {})[model.version] = model
        self._publish(model)
        if serving is not None:
            log.error("model %s version %d failed to load: %s; version %d goes on serving", model.name,
                      model.version, reason, serving)  # fmt: skip
        else:
            log.error("model %s failed to load: %s", model.name, reason)

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    async def _poll(self) -> None:
        """``poll`` mode: every ``repository_poll_seconds``, load what is new or changed and
        unload what is gone (see :meth:`poll_once`)."""
        while True:
            await asyncio.sleep(self.settings.repository_poll_seconds)
            try:
                await self.poll_once()
            except Exception:  # a bad moment (a folder half-renamed): the next look will do
                log.exception("looking at repository %s failed", self.settings.repo)

    async def poll_once(self) -> None:
        """One look at the repository. A change is acted on once two looks in a row agree, so
        that a version folder still being copied in is not loaded half-written, nor an entry
        being replaced unloaded; an entry that failed is tried again only once its files change."""
        entries = await asyncio.to_thread(self._entries)
        before, self._seen = self._seen, {}
        for name, entry in entries.items():
            fingerprint = self._seen[name] = await asyncio.to_thread(repository.fingerprint, entry)
            current = self.models.get(name)
            settled = before.get(name) == fingerprint
            new = fingerprint != self._attempted.get(name) and (current is None or current.fingerprint != fingerprint)
            if settled and new:
                with contextlib.suppress(errors.ServingError):  # logged and in the index
                    await self.load(name, control=False)
        for name, model in list(self.models.items()):
            if name not in entries and name not in before and model.state is not State.UNLOADED:
                log.info("model %s: its entry left repository %s; unloading", name, self.settings.repo)
                await self.unload(name, control=False)

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
            trained=bool(config.trained) if config else False,
            state=model.state.value,
        )
