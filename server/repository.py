"""Reading the model repository that ``cnnserve export`` writes (layout in DESIGN.md).

A broken entry is reported with its reason and does not hide the good ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

V2_DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                "FP16", "FP32", "FP64", "BYTES")  # fmt: skip


class RepositoryError(ValueError):
    """An entry that cannot be served; the message names the file and the field."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # V2 name, e.g. "FP32"
    shape: tuple[int, ...]  # one item: no batch axis
    layout: str = ""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    architecture: str
    family: str
    task: str  # "classification" or "policy"
    version: int
    onnx_path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    labels: tuple[str, ...]
    preprocessing: Mapping[str, Any] | None
    facts: Mapping[str, Any]
    trained: bool
    weights_source: str
    raw: Mapping[str, Any]


def _field(data: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise RepositoryError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RepositoryError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return value


def _tensor(data: Any, where: str) -> TensorSpec:
    if not isinstance(data, Mapping):
        raise RepositoryError(f"{where}: expected an object with name, datatype and shape")
    name = _field(data, "name", where, str)
    datatype = _field(data, "datatype", where, str)
    if datatype not in V2_DATATYPES:
        raise RepositoryError(f"{where}: datatype {datatype!r} is not a V2 datatype ({', '.join(V2_DATATYPES)})")
    shape = _field(data, "shape", where, list)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise RepositoryError(f"{where}: shape must be positive integers (no batch axis), got {shape!r}")
    return TensorSpec(name, datatype, tuple(shape), str(data.get("layout", "")))


def _versions(entry: Path) -> list[int]:
    return sorted(int(p.name) for p in entry.iterdir() if p.is_dir() and p.name.isdigit())


def load_entry(entry: Path, overrides: Mapping[str, int] | None = None) -> ModelConfig:
    """Parse and check one entry; ``overrides`` may set max_batch_size and max_queue_delay_us."""
    config_path = entry / "config.json"
    where = str(config_path)
    if not config_path.is_file():
        raise RepositoryError(f"{entry}: no config.json")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RepositoryError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RepositoryError(f"{where}: expected a JSON object")
    name = _field(data, "name", where, str)
    if name != entry.name:
        raise RepositoryError(f"{where}: name {name!r} differs from the folder name {entry.name!r}")
    inputs = tuple(_tensor(t, f"{where} input[{i}]") for i, t in enumerate(_field(data, "input", where, list)))
    outputs = tuple(_tensor(t, f"{where} output[{i}]") for i, t in enumerate(_field(data, "output", where, list)))
    if not inputs or not outputs:
        raise RepositoryError(f"{where}: needs at least one input and one output")
    overrides = overrides or {}
    max_batch = int(overrides.get("max_batch_size", _field(data, "max_batch_size", where, int)))
    if max_batch < 1:
        raise RepositoryError(f"{where}: max_batch_size must be at least 1, got {max_batch}")
    batching = data.get("dynamic_batching") or {}
    delay = int(overrides.get("max_queue_delay_us", batching.get("max_queue_delay_us", 0)))
    preferred = tuple(sorted({int(b) for b in batching.get("preferred_batch_sizes", []) if 1 <= int(b) <= max_batch}))
    versions = _versions(entry)
    if not versions:
        raise RepositoryError(f"{entry}: no version folder (expected {entry}/1/model.onnx)")
    onnx_path = entry / str(versions[-1]) / "model.onnx"
    if not onnx_path.is_file():
        raise RepositoryError(f"{entry}: version {versions[-1]} has no model.onnx")
    labels: tuple[str, ...] = ()
    labels_file = next((o for o in data["output"] if o.get("labels")), None)
    if labels_file:
        path = entry / str(labels_file["labels"])
        if not path.is_file():
            raise RepositoryError(f"{where}: labels file {path.name} does not exist")
        labels = tuple(path.read_text(encoding="utf-8").splitlines())
        classes = outputs[0].shape[-1]
        if len(labels) != classes:
            raise RepositoryError(f"{path}: {len(labels)} labels, but output {outputs[0].name!r} has {classes} classes")
    weights = data.get("weights") or {}
    return ModelConfig(
        name=name,
        architecture=str(data.get("architecture", name)),
        family=str(data.get("family", "")),
        task=str(data.get("task", "")),
        version=versions[-1],
        onnx_path=onnx_path,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch,
        max_queue_delay_us=delay,
        preferred_batch_sizes=preferred,
        labels=labels,
        preprocessing=data.get("preprocessing"),
        facts=dict(data.get("facts") or {}),
        trained=bool(weights.get("trained", False)),
        weights_source=str(weights.get("source", "")),
        raw=data,
    )


def scan(repo: str | Path, overrides: Mapping[str, int] | None = None) -> tuple[list[ModelConfig], dict[str, str]]:
    """Every entry of ``repo``: the good ones, and name -> reason for the rest.

    Hidden folders are skipped: the exporter stages entries in ``.NAME.xxxx`` before renaming.
    """
    repo = Path(repo)
    if not repo.is_dir():
        raise RepositoryError(f"model repository {repo} does not exist (run `cnnserve export NAME` or `make export`)")
    good: list[ModelConfig] = []
    bad: dict[str, str] = {}
    for entry in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            good.append(load_entry(entry, overrides))
        except (RepositoryError, OSError, ValueError) as exc:
            bad[entry.name] = str(exc)
    return good, bad
