"""Export a registered architecture to a model-repository entry (the layout is described
in docs/models.md; the format itself is :mod:`cnnserve.repository`'s).

    exported/NAME/config.json    what the server needs: I/O, batching, preprocessing, facts
    exported/NAME/labels.txt     classifiers only, one class name a line
    exported/NAME/1/model.onnx   batch axis dynamic

Every entry is built in a temporary folder beside its destination and only renamed into place
after ONNX Runtime has reproduced PyTorch's output on random inputs at two batch sizes, so a
failed or interrupted export never leaves a half-written entry behind. ``version=N`` adds a
version folder to an entry instead of replacing it (a server in poll mode then rolls it out).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from cnnserve.builders import digits, labels, registry
from cnnserve.builders.registry import ArchSpec, Preprocessing
from cnnserve.builders.shipped import Shipped, shipped
from cnnserve.builders.summary import Summary, summarize
from cnnserve.builders.weights import calibrate_batchnorm, load_checkpoint
from cnnserve.repository import LABELS_FILE, MODEL_FILE, EntryConfig, TensorSpec

DEFAULT_OPSET = 18
PARITY_BATCH_SIZES = (1, 3)
# See check_parity: ONNX Runtime may land somewhat further from the float64 truth than
# PyTorch's float32 run (its kernels sum in another order); a wrong graph (a missing layer, a
# transposed weight) is orders of magnitude further.
FP32_ROUNDING_FACTOR = 4.0
FP32_RTOL = 1e-5
# Random deep networks amplify every rounding step (trained ones far less), so the float16 check
# catches a broken graph, not the last digit.
FP16_RELATIVE_RMS = 5e-2

log = logging.getLogger("cnnserve.export")

Progress = Callable[[str], None]


class ExportError(RuntimeError):
    """An export that was refused; nothing was written."""


@dataclass(frozen=True)
class ExportResult:
    name: str
    path: Path
    config: dict[str, Any]
    seconds: float


def _quiet_progress(_: str) -> None:
    pass


@contextlib.contextmanager
def _quiet_torch_exporter() -> Iterator[None]:
    """torch.onnx's dynamo exporter chats on stdout and warns about its own internals."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\..*|copyreg")
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class _Half(nn.Module):
    """Runs the network in float16 behind a float32 interface, so clients need not change."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.half()).float()


class _Uint8Input(nn.Module):
    """Takes uint8 pixels NHWC and applies the preprocessing's scaling and per-channel mean and
    std in the graph, so that clients send a quarter of float32's bytes and no arithmetic.

    ``(x * scale - mean) / std`` is folded into one multiply and one subtract per channel.
    """

    gain: torch.Tensor
    offset: torch.Tensor

    def __init__(self, inner: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.inner = inner
        channels = len(preprocessing.mean)
        scale = preprocessing.as_dict()["scale"]
        gain = [scale / s for s in preprocessing.std]
        offset = [m / s for m, s in zip(preprocessing.mean, preprocessing.std, strict=True)]
        self.register_buffer("gain", torch.tensor(gain).view(1, channels, 1, 1))
        self.register_buffer("offset", torch.tensor(offset).view(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.permute(0, 3, 1, 2).to(self.gain.dtype)
        return self.inner(pixels * self.gain - self.offset)


def item_shape(spec: ArchSpec, uint8: bool) -> tuple[int, ...]:
    """One input item of the export: (channels, height, width), or (height, width, channels) for
    a ``--uint8-input`` one."""
    if not uint8:
        return spec.input_shape
    channels, height, width = spec.input_shape
    return (height, width, channels)


def _example(shape: tuple[int, ...], batch: int, uint8: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    if uint8:
        return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=generator)
    return torch.randn(batch, *shape, generator=generator)


def to_onnx(model: nn.Module, spec: ArchSpec, path: Path, opset: int = DEFAULT_OPSET, *, uint8: bool = False) -> None:
    """Write ``model`` as ONNX with a symbolic batch axis named ``batch``."""
    example = _example(item_shape(spec, uint8), 2, uint8)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with _quiet_torch_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[spec.input_name],
            output_names=[spec.output_name],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
        if program is None:  # pragma: no cover - dynamo=True always returns a program
            raise ExportError("torch.onnx.export returned no program")
        program.save(str(path))
    graph = onnx.load(str(path), load_external_data=False).graph
    for value in (*graph.input, *graph.output):
        first = value.type.tensor_type.shape.dim[0]
        if not first.dim_param:
            raise ExportError(f"exported {value.name!r} has a fixed batch axis ({first.dim_value}), expected symbolic")


def check_parity(
    reference: nn.Module, spec: ArchSpec, path: Path, *, fp16: bool = False, uint8: bool = False, seed: int = 1
) -> dict[str, float]:
    """Run the ONNX file in ONNX Runtime on random inputs at two batch sizes and compare it with
    PyTorch; raise :class:`ExportError` if it computes something else.

    "Beyond float32 rounding" is measured, not guessed: the truth is the float64 run of
    ``reference``, and ONNX Runtime's error against it may be at most 4x PyTorch's own float32
    error (plus 1e-5 of the output scale). Deep random networks amplify rounding (a random
    ResNet-152 ends 1e-3 away from float64 in either runtime), so a fixed tolerance would be too
    loose for shallow nets or too strict for deep ones. float16 exports, whose every layer rounds
    to 11 bits, must stay within 5% relative RMS error of the truth. ``uint8`` exports get random
    pixels (``reference`` then takes them too).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # As many threads as PyTorch computes with, so OMP_NUM_THREADS bounds the whole check.
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    truth_model = copy.deepcopy(reference).double().eval()
    generator = torch.Generator().manual_seed(seed)
    # PyTorch runs once, at the largest batch: items are independent in eval mode, so a smaller
    # batch's truth is the prefix of the larger one's. ONNX Runtime runs at every batch size: that
    # is what shows the symbolic batch axis works.
    x = _example(item_shape(spec, uint8), max(PARITY_BATCH_SIZES), uint8, generator)
    with torch.no_grad():
        all_torch32 = reference(x).float().numpy().astype(np.float64)
        all_truth = truth_model(x if uint8 else x.double()).numpy()
    worst = {"max_abs_error": 0.0, "torch_float32_max_abs_error": 0.0, "relative_rms_error": 0.0}
    for batch in PARITY_BATCH_SIZES:
        truth, torch32 = all_truth[:batch], all_torch32[:batch]
        (actual,) = session.run([spec.output_name], {spec.input_name: x[:batch].numpy()})
        if actual.shape != truth.shape:
            raise ExportError(f"{spec.name}: ONNX output shape {actual.shape}, PyTorch {truth.shape}")
        diff = actual.astype(np.float64) - truth
        scale = float(np.max(np.abs(truth)))
        max_abs = float(np.max(np.abs(diff)))
        torch_abs = float(np.max(np.abs(torch32 - truth)))
        rel_rms = float(np.sqrt(np.mean(diff**2)) / max(np.sqrt(np.mean(truth**2)), 1e-30))
        if fp16:
            ok, what = rel_rms <= FP16_RELATIVE_RMS, f"relative RMS error {rel_rms:.3g} > {FP16_RELATIVE_RMS}"
        else:
            limit = FP32_ROUNDING_FACTOR * torch_abs + FP32_RTOL * scale
            ok = max_abs <= limit
            what = f"max abs error {max_abs:.3g} > {limit:.3g} allowed (PyTorch float32: {torch_abs:.3g})"
        if not ok or not np.isfinite(diff).all():
            raise ExportError(f"{spec.name}: ONNX Runtime disagrees with PyTorch at batch {batch}: {what}")
        for key, value in (
            ("max_abs_error", max_abs),
            ("torch_float32_max_abs_error", torch_abs),
            ("relative_rms_error", rel_rms),
        ):
            worst[key] = max(worst[key], value)
    return worst


def _prepare_weights(
    model: nn.Module,
    spec: ArchSpec,
    checkpoint: str | Path | None,
    progress: Progress,
    shipped: Shipped | None = None,
    random_weights: bool = False,
) -> dict[str, Any]:
    """Give ``model`` its weights; return the config's record of where they came from."""
    if checkpoint is not None:
        digest = load_checkpoint(model, checkpoint)
        return {"trained": True, "kind": "checkpoint", "source": f"checkpoint {Path(checkpoint).name}",
                "sha256": digest}  # fmt: skip
    if shipped is not None:
        progress(f"loading the shipped weights {shipped.weights.name}")
        return shipped.record(shipped.load_into(model))
    if spec.name == "lenet5" and not random_weights:
        progress("training on scikit-learn's digits")
        split = digits.load_split()
        assert spec.preprocessing is not None
        mean, std = spec.preprocessing.mean[0], spec.preprocessing.std[0]
        accuracy = digits.train(model, split, mean, std)
        return {
            "trained": True,
            "kind": "trained at export",
            "source": "trained at export on scikit-learn's digits, rendered at 32x32",
            "train_examples": len(split.train_labels),
            "held_out_examples": len(split.test_labels),
            "held_out_accuracy": round(accuracy, 4),
        }
    calibrated = calibrate_batchnorm(model, spec.input_shape)
    source = "random (seed 0)" + (", batch-norm statistics calibrated on Gaussian noise" if calibrated else "")
    return {"trained": False, "kind": "random", "source": source}


def batch_sizes(spec: ArchSpec, max_batch_size: int | None = None) -> tuple[int, tuple[int, ...]]:
    """The entry's max_batch_size and preferred sizes: the architecture's defaults, or
    ``max_batch_size`` with the preferred sizes clamped to it, plus itself when it is larger than
    the default (a GPU's best batch may be beyond it: full batches then count as preferred and
    are warmed up)."""
    if max_batch_size is None:
        return spec.max_batch_size, tuple(b for b in spec.preferred_batch_sizes if b <= spec.max_batch_size)
    if max_batch_size < 1:
        raise ExportError(f"--max-batch-size must be 1 or more, got {max_batch_size}")
    preferred = {min(b, max_batch_size) for b in spec.preferred_batch_sizes}
    if max_batch_size > spec.max_batch_size:
        preferred.add(max_batch_size)
    return max_batch_size, tuple(sorted(preferred))


def build_config(
    spec: ArchSpec,
    facts: Summary,
    weights: dict[str, Any],
    extra: dict[str, Any],
    *,
    uint8: bool = False,
    name: str | None = None,
    max_batch_size: int | None = None,
) -> EntryConfig:
    """The entry's config.json (:class:`cnnserve.repository.EntryConfig`); ``name`` is the
    entry's name where it differs from the architecture's, ``max_batch_size`` the entry's where it
    differs from the architecture's default (see :func:`batch_sizes`)."""
    max_batch, preferred = batch_sizes(spec, max_batch_size)
    preprocessing = spec.preprocessing.as_dict() if spec.preprocessing else None
    if preprocessing and uint8:
        # Resize and crop stay with the client; scale, mean and std are in the graph.
        preprocessing["in_graph"] = ["scale", "mean", "std"]
    return EntryConfig(
        name=name or spec.name,
        architecture=spec.name,
        family=spec.family,
        task=spec.task,
        description=spec.description,
        paper=spec.paper,
        max_batch_size=max_batch,
        inputs=(
            TensorSpec(
                spec.input_name, "UINT8" if uint8 else "FP32", item_shape(spec, uint8), "NHWC" if uint8 else "NCHW"
            ),
        ),
        outputs=(TensorSpec(spec.output_name, "FP32", (spec.num_classes,)),),
        labels=(0, LABELS_FILE) if spec.labels else None,
        max_queue_delay_us=spec.max_queue_delay_us,
        preferred_batch_sizes=preferred,
        preprocessing=preprocessing,
        facts={
            "weight_layers": facts.weight_layers,
            "parameters": facts.parameters,
            "macs": facts.macs,
            "activations": facts.activations,
            "activation_bytes": facts.activation_bytes,
        },
        weights=weights,
        extra=extra,
    )


def export(
    name: str,
    repo: str | Path = "exported",
    *,
    opset: int = DEFAULT_OPSET,
    checkpoint: str | Path | None = None,
    fp16: bool = False,
    uint8_input: bool = False,
    options: dict[str, Any] | None = None,
    entry_name: str | None = None,
    max_batch_size: int | None = None,
    seed: int = 0,
    version: int | None = None,
    random_weights: bool = False,
    progress: Progress = _quiet_progress,
) -> ExportResult:
    """Build, export, check and atomically install one repository entry; return what was written.

    ``uint8_input``: the graph takes uint8 pixels NHWC and does the scaling and normalising itself.
    ``version``: add this version folder beside the entry's others (and write its config.json and
    labels), rather than replace the entry whole with version 1; a version that exists is refused.
    ``random_weights``: neither the weights cnnserve ships for the architecture nor lenet5's
    training at export, but random ones.
    """
    if version is not None and version < 1:
        raise ExportError(f"--version {version}: expected a version number of 1 or more")
    started = time.perf_counter()
    spec = registry.get(name)
    batch_sizes(spec, max_batch_size)  # a bad one is refused before any work
    if uint8_input and spec.preprocessing is None:
        raise ExportError(f"{spec.name} does not take images, so it has no uint8 pixel input (--uint8-input)")
    options = dict(options or {})
    ship = None if checkpoint is not None or random_weights else shipped(spec.name)
    if ship is not None and ship.fits(options):
        options = {**ship.options, **options}  # the shipped network's shape, unless asked otherwise
    else:
        ship = None
    # An alias names the entry as the user wrote it: `export vgg16` serves a model called vgg16.
    entry = entry_name or registry.canonical_or_alias(name)
    repo = Path(repo)
    try:
        repo.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry}.", dir=repo))
    except OSError as exc:
        raise ExportError(f"cannot write to repository {repo}: {exc.strerror or exc}") from exc
    try:
        torch.manual_seed(seed)
        progress("building")
        model = spec.build(**options).eval()
        weights = _prepare_weights(model, spec, checkpoint, progress, ship, random_weights)
        facts = summarize(model, spec.input_shape, spec.name)
        net: nn.Module = _Half(copy.deepcopy(model)).eval() if fp16 else model
        reference = model
        if uint8_input:
            assert spec.preprocessing is not None
            net = _Uint8Input(net, spec.preprocessing).eval()
            reference = _Uint8Input(model, spec.preprocessing).eval()
        progress("exporting to ONNX")
        version_dir = staging / str(version or 1)
        version_dir.mkdir()
        onnx_path = version_dir / MODEL_FILE
        to_onnx(net, spec, onnx_path, opset, uint8=uint8_input)
        progress("checking ONNX Runtime against PyTorch")
        parity = check_parity(reference, spec, onnx_path, fp16=fp16, uint8=uint8_input)
        extra = {
            "options": options,
            "export": {
                "opset": opset,
                "precision": "fp16" if fp16 else "fp32",
                "input": "uint8 NHWC, normalised in the graph" if uint8_input else "float32 NCHW",
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "parity": {**parity, "batch_sizes": list(PARITY_BATCH_SIZES), "reference": "torch float64"},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        config = build_config(spec, facts, weights, extra, uint8=uint8_input, name=entry, max_batch_size=max_batch_size)
        config.write(staging)
        class_names = labels.for_set(spec.labels)
        if class_names:
            (staging / LABELS_FILE).write_text("\n".join(class_names) + "\n", encoding="utf-8")
        if version is None:
            _install(staging, repo / entry)
        else:
            _add_version(staging, repo / entry, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(entry, repo / entry, config.to_json(), time.perf_counter() - started)


def _add_version(staging: Path, destination: Path, version: int) -> None:
    """Put ``staging``'s version folder beside ``destination``'s others, then its config.json and
    labels in place of the old ones, each with one rename: a server that reads the entry meanwhile
    sees the old version or the new one, never part of a file."""
    if not destination.exists():
        _install(staging, destination)
        return
    target = destination / str(version)
    if target.exists():
        raise ExportError(f"{target} exists: a served version is never overwritten; export a higher --version")
    (staging / str(version)).chmod(0o755)
    (staging / str(version)).rename(target)
    for item in sorted(staging.iterdir()):
        if item.is_file():
            os.replace(item, destination / item.name)
    shutil.rmtree(staging, ignore_errors=True)


def _install(staging: Path, destination: Path) -> None:
    """Replace ``destination`` by ``staging`` with renames only, so readers never see a partial entry."""
    staging.chmod(0o755)  # mkdtemp makes it 0700
    old = None
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old.{os.getpid()}")
        destination.rename(old)
    try:
        staging.rename(destination)
    except OSError:
        if old is not None:
            old.rename(destination)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
