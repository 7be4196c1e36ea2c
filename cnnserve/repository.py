"""The model repository's format, defined once: ``cnnserve export`` writes it through
:class:`EntryConfig` and the server reads it through :func:`scan` (README, "Exporting"):

    REPO/NAME/config.json, REPO/NAME/labels.txt (classifiers), REPO/NAME/<version>/model.onnx

or, where the repository is one entry (KServe's ``/mnt/models``), the same files at its top.
The highest numeric version folder is served. Every problem is a :class:`RepositoryError` whose
message names the file and the field; :func:`scan` reports a broken entry by name and reason and
goes on with the others, so that one bad export never takes a whole server down.

The server reads nothing outside the repository: an entry whose files are symlinks (or lie under
symlinked folders) resolving outside the repository folder, or whose ONNX graph names external
data outside the model's folder, is refused. Symlinks within the repository (version 2 -> 1) are
fine.

No torch here: the serving path reads this module, and the exporter only writes through it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnserve.datatypes import DATATYPES
from cnnserve.onnx_external import external_data

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"  # what export names; config.json may name another file
MODEL_FILE = "model.onnx"  # inside each version folder
CONFIG_VERSION = 1
PLATFORM = "onnxruntime_onnx"

# What callers (the settings module: CLI flags and CNNSERVE_* variables) may override per server.
OVERRIDABLE = ("max_batch_size", "max_queue_delay_us", "preferred_batch_sizes")
Overrides = Mapping[str, int | Sequence[int] | None]

_VERSION = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²"


class RepositoryError(ValueError):
    """An entry that cannot be served; the message names the file and the field."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # V2 name, e.g. "FP32"
    shape: tuple[int, ...]  # one item: no batch axis
    layout: str = ""  # e.g. "NCHW"; "" where config.json gives none

    def to_json(self, labels: str = "") -> dict[str, Any]:
        item: dict[str, Any] = {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        if self.layout:
            item["layout"] = self.layout
        if labels:
            item["labels"] = labels
        return item


@dataclass(frozen=True)
class EntryConfig:
    """``config.json``, field for field: what export writes and what the server reads."""

    name: str
    architecture: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    facts: Mapping[str, Any]  # weight_layers, parameters, macs (checked), and whatever else export measured
    weights: Mapping[str, Any]  # trained (checked), source, and how they were obtained
    family: str = ""
    task: str = ""  # "classification" or "policy" for the exported networks
    description: str = ""
    paper: str = ""
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()  # as written; the server clamps them to max_batch_size
    preprocessing: Mapping[str, Any] | None = None  # resize, crop, mean, std for image models
    labels: tuple[int, str] | None = None  # (output index, file) of the one output whose classes have names
    instance_count: int | None = None  # instance_group's count; None: the server's --instances decides
    extra: Mapping[str, Any] = field(default_factory=dict)  # further fields, kept as written (options, export)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "config_version": CONFIG_VERSION,
            "name": self.name,
            "architecture": self.architecture,
            "family": self.family,
            "task": self.task,
            "platform": PLATFORM,
            "description": self.description,
            "paper": self.paper,
            "max_batch_size": self.max_batch_size,
            "input": [spec.to_json() for spec in self.inputs],
            "output": [
                spec.to_json(self.labels[1] if self.labels and self.labels[0] == i else "")
                for i, spec in enumerate(self.outputs)
            ],
            "dynamic_batching": {
                "max_queue_delay_us": self.max_queue_delay_us,
                "preferred_batch_sizes": list(self.preferred_batch_sizes),
            },
            "preprocessing": dict(self.preprocessing) if self.preprocessing is not None else None,
            "facts": dict(self.facts),
            "weights": dict(self.weights),
        }
        if self.instance_count is not None:
            data["instance_group"] = [{"count": self.instance_count, "kind": "KIND_AUTO"}]
        clash = sorted(set(self.extra) & set(data))
        if clash:
            raise ValueError(f"extra fields {clash} would overwrite config.json's own")
        return {**data, **self.extra}

    def write(self, entry: Path) -> Path:
        """Write ``entry/config.json``; return its path."""
        path = entry / CONFIG_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


@dataclass(frozen=True)
class ModelConfig:
    """A repository entry as the server serves it: its config.json with the server's batching
    overrides applied, the version folder chosen and the labels read."""

    name: str
    architecture: str
    family: str
    task: str  # "classification" or "policy" for the exported networks
    version: int  # the served (highest) version folder
    onnx_path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]  # ascending, each <= max_batch_size
    instance_count: int | None  # config.json's instance_group count; None where it gives none
    labels: tuple[str, ...]  # class names of the output that names a labels file; () otherwise
    preprocessing: Mapping[str, Any] | None  # resize, crop, mean, std for image models
    facts: Mapping[str, Any]  # weight_layers, parameters, macs (checked), and whatever else export wrote
    trained: bool
    weights_source: str
    raw: Mapping[str, Any]  # config.json as read, before overrides

    @property
    def weights_kind(self) -> str:
        """``shipped``, ``checkpoint``, ``trained at export`` or ``random`` (older configs: trained or random)."""
        kind = self.raw.get("weights", {}).get("kind")
        return str(kind) if kind else ("trained" if self.trained else "random")

    @property
    def weight_layers(self) -> int:
        return int(self.facts["weight_layers"])

    @property
    def parameters(self) -> int:
        return int(self.facts["parameters"])

    @property
    def macs(self) -> int:
        return int(self.facts["macs"])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a batch size


_KIND_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object", bool: "true or false"}


def _get(data: Mapping[str, Any], key: str, kind: type, file: Path, prefix: str = "") -> Any:
    """``data[key]`` checked against ``kind``; errors read 'FILE: field PREFIX.KEY ...'."""
    field = f"{prefix}{key}"
    if key not in data:
        raise RepositoryError(f"{file}: missing field {field!r}")
    value = data[key]
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise RepositoryError(f"{file}: field {field!r} must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}")
    return value


def _tensor(data: Any, file: Path, field: str) -> TensorSpec:
    if not isinstance(data, dict):
        raise RepositoryError(f"{file}: field {field!r} must be an object with name, datatype and shape")
    prefix = f"{field}."
    name = _get(data, "name", str, file, prefix)
    datatype = _get(data, "datatype", str, file, prefix)
    if datatype not in DATATYPES:
        raise RepositoryError(
            f"{file}: field '{prefix}datatype' is {datatype!r}, not a V2 datatype ({', '.join(DATATYPES)})"
        )
    shape = _get(data, "shape", list, file, prefix)
    if not all(_is_int(d) and d > 0 for d in shape):
        raise RepositoryError(f"{file}: field '{prefix}shape' must be positive integers (no batch axis), got {shape}")
    layout = data.get("layout", "")
    if not isinstance(layout, str):
        raise RepositoryError(f"{file}: field '{prefix}layout' must be a string, got {layout!r}")
    return TensorSpec(name, datatype, tuple(shape), layout)


def _tensors(data: Mapping[str, Any], key: str, file: Path) -> tuple[TensorSpec, ...]:
    items = _get(data, key, list, file)
    if not items:
        raise RepositoryError(f"{file}: field {key!r} is empty; a model needs at least one {key}")
    specs = tuple(_tensor(item, file, f"{key}[{i}]") for i, item in enumerate(items))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise RepositoryError(f"{file}: field {key!r} repeats a tensor name: {names}")
    return specs


def _check_overrides(overrides: Overrides) -> dict[str, Any]:
    """The overrides that are set (None = keep config.json's), checked once for every entry."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"unknown batching override(s) {sorted(unknown)}; expected some of {list(OVERRIDABLE)}")
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    for key, least in (("max_batch_size", 1), ("max_queue_delay_us", 0)):
        value = given.get(key, least)
        if not (_is_int(value) and value >= least):
            raise ValueError(f"{key} override must be an integer >= {least}, got {value!r}")
    preferred = given.get("preferred_batch_sizes", ())
    if not (isinstance(preferred, Sequence) and all(_is_int(b) and b >= 1 for b in preferred)):
        raise ValueError(f"preferred_batch_sizes override must be integers >= 1, got {preferred!r}")
    return given


def _batching(data: Mapping[str, Any], file: Path) -> tuple[int, int, tuple[int, ...]]:
    """max_batch_size, max_queue_delay_us and the preferred sizes, as config.json gives them."""
    max_batch = _get(data, "max_batch_size", int, file)
    if max_batch < 1:
        raise RepositoryError(f"{file}: field 'max_batch_size' must be at least 1 (the batch axis is dynamic)")
    batching = data.get("dynamic_batching", {})
    if not isinstance(batching, dict):
        raise RepositoryError(f"{file}: field 'dynamic_batching' must be an object, got {batching!r}")
    delay = batching.get("max_queue_delay_us", 0)
    if not (_is_int(delay) and delay >= 0):
        raise RepositoryError(f"{file}: field 'dynamic_batching.max_queue_delay_us' must be an integer >= 0")
    preferred = batching.get("preferred_batch_sizes", [])
    if not (isinstance(preferred, list) and all(_is_int(b) and b >= 1 for b in preferred)):
        raise RepositoryError(f"{file}: field 'dynamic_batching.preferred_batch_sizes' must be integers >= 1")
    return max_batch, delay, tuple(preferred)


def _overridden(config: EntryConfig, given: Mapping[str, Any]) -> tuple[int, int, tuple[int, ...]]:
    """The batching with the server's overrides applied.

    Preferred sizes above max_batch_size are clamped to it rather than dropped: lowering
    ``--max-batch-size`` to 8 on a model that prefers (1, 16, 64) gives (1, 8), so full batches
    still count as preferred and get warmed up.
    """
    max_batch = int(given.get("max_batch_size", config.max_batch_size))
    delay = int(given.get("max_queue_delay_us", config.max_queue_delay_us))
    preferred = list(given.get("preferred_batch_sizes", config.preferred_batch_sizes))
    return max_batch, delay, tuple(sorted({min(int(b), max_batch) for b in preferred}))


def _instance_count(data: Mapping[str, Any], file: Path) -> int | None:
    """The count of config.json's ``instance_group`` (Triton's field: a list of one group), None
    where there is none. Only ``KIND_AUTO`` is taken: the server's ``--device`` says where models run."""
    groups = data.get("instance_group")
    if groups is None:
        return None
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)):
        raise RepositoryError(f"{file}: field 'instance_group' must be a list of one group, "
                              f'as [{{"count": 2}}], got {groups!r}')  # fmt: skip
    count = groups[0].get("count", 1)
    if not (_is_int(count) and count >= 1):
        raise RepositoryError(f"{file}: field 'instance_group[0].count' must be an integer >= 1, got {count!r}")
    kind = groups[0].get("kind", "KIND_AUTO")
    if kind != "KIND_AUTO":
        raise RepositoryError(f"{file}: field 'instance_group[0].kind' must be KIND_AUTO (--device chooses "
                              f"where models run), got {kind!r}")  # fmt: skip
    unknown = sorted(set(groups[0]) - {"count", "kind"})
    if unknown:
        raise RepositoryError(f"{file}: field 'instance_group[0]' has unknown keys {unknown}; expected count, kind")
    return int(count)


def _labels_field(data: Mapping[str, Any], file: Path) -> tuple[int, str] | None:
    """(index, file) of the output that names a labels file; at most one may."""
    labelled = [(i, o) for i, o in enumerate(data["output"]) if "labels" in o]
    if not labelled:
        return None
    if len(labelled) > 1:
        raise RepositoryError(f"{file}: only one output may name a labels file; outputs {[i for i, _ in labelled]} do")
    index, item = labelled[0]
    name = item["labels"]
    if not isinstance(name, str) or not name:
        raise RepositoryError(f"{file}: field 'output[{index}].labels' must be a file name, got {name!r}")
    return index, name


def parse_config(data: Any, file: Path) -> EntryConfig:
    """config.json's content, checked field by field; errors read 'FILE: field ...'."""
    if not isinstance(data, dict):
        raise RepositoryError(f"{file}: expected a JSON object, got {type(data).__name__}")
    name = _get(data, "name", str, file)
    architecture = _get(data, "architecture", str, file)
    inputs = _tensors(data, "input", file)
    outputs = _tensors(data, "output", file)
    max_batch, delay, preferred = _batching(data, file)
    preprocessing = data.get("preprocessing")
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise RepositoryError(f"{file}: field 'preprocessing' must be an object or null, got {preprocessing!r}")
    facts = _get(data, "facts", dict, file)
    for key in ("weight_layers", "parameters", "macs"):
        if _get(facts, key, int, file, "facts.") < 0:
            raise RepositoryError(f"{file}: field 'facts.{key}' must be >= 0")
    weights = _get(data, "weights", dict, file)
    _get(weights, "trained", bool, file, "weights.")
    known = {"config_version", "name", "architecture", "family", "task", "platform", "description", "paper",
             "max_batch_size", "input", "output", "dynamic_batching", "preprocessing", "facts", "weights",
             "instance_group"}  # fmt: skip
    return EntryConfig(
        name=name,
        architecture=architecture,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch,
        facts=facts,
        weights=weights,
        family=str(data.get("family", "")),
        task=str(data.get("task", "")),
        description=str(data.get("description", "")),
        paper=str(data.get("paper", "")),
        max_queue_delay_us=delay,
        preferred_batch_sizes=preferred,
        preprocessing=preprocessing,
        labels=_labels_field(data, file),
        instance_count=_instance_count(data, file),
        extra={k: v for k, v in data.items() if k not in known},
    )


def with_batching(data: Mapping[str, Any], file: Path, *, max_batch_size: int, max_queue_delay_us: int,
                  preferred_batch_sizes: Sequence[int], instance_count: int,
                  tuning: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """``config.json``'s content ``data`` with its batching and instance count replaced, and
    ``tuning`` (how they were chosen) recorded beside them; checked as the server will read it
    (RepositoryError, naming ``file`` and the field, otherwise)."""
    changed = {**data, "max_batch_size": max_batch_size,
               "dynamic_batching": {"max_queue_delay_us": max_queue_delay_us,
                                    "preferred_batch_sizes": list(preferred_batch_sizes)},
               "instance_group": [{"count": instance_count, "kind": "KIND_AUTO"}], "tuning": dict(tuning)}  # fmt: skip
    parse_config(changed, file)
    return changed


def versions(entry: str | Path) -> list[int]:
    """The version folders of an entry, ascending (hidden staging folders are not versions)."""
    return sorted(int(p.name) for p in Path(entry).iterdir() if p.is_dir() and _VERSION.fullmatch(p.name))


def is_single_entry(repo: str | Path) -> bool:
    """Whether ``repo`` is itself one entry (its config.json and version folders at the top), as
    KServe's storage initializer fills ``/mnt/models`` with the one model it serves."""
    return (Path(repo) / CONFIG_FILE).is_file()


def entries(repo: str | Path, name: str = "") -> dict[str, Path]:
    """The entries of ``repo`` by name, not yet read: each folder with a config.json; or, where
    ``repo`` is a single entry, that one, named ``name`` (or as its config.json says)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise RepositoryError(f"model repository {repo} does not exist (run `cnnserve export NAME` or `make export`)")
    if is_single_entry(repo):
        return {name or _config_name(repo) or repo.name: repo}
    return {p.name: p for p in sorted(repo.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _config_name(entry: Path) -> str:
    try:
        name = json.loads((entry / CONFIG_FILE).read_text(encoding="utf-8")).get("name", "")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return ""  # reading it for real says what is wrong
    return name if isinstance(name, str) else ""


def fingerprint(entry: str | Path) -> tuple[object, ...]:
    """What changes when an entry is exported again or given a new version: its highest version
    folder, and the size and modification time of its files (config.json, labels) and of that
    version's model."""
    entry = Path(entry)
    try:
        newest = versions(entry)[-1:]
        files = sorted(p for p in entry.iterdir() if p.is_file()) + [entry / str(v) / MODEL_FILE for v in newest]
        return (tuple(newest), *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()))
    except OSError as exc:  # removed while looked at: differs from any readable state
        return ("unreadable", str(exc))


def _inside(path: Path, root: Path) -> None:
    """Refuse ``path`` where it resolves, through a symlink of its own or of a folder above it,
    outside ``root`` (the repository folder); a missing ``path`` resolves as far as it exists."""
    try:
        target = path.resolve()
        real_root = root.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise RepositoryError(f"{path}: cannot be resolved: {exc}") from None
    if target == real_root or real_root in target.parents:
        return
    how = "a symlink to" if path.is_symlink() else "under a symlinked folder, resolving to"
    raise RepositoryError(f"{path}: {how} {target}, outside the repository {root}")


def _version(entry: Path, root: Path) -> tuple[int, Path]:
    folders = {int(p.name): p for p in entry.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)}
    if not folders:
        raise RepositoryError(f"{entry}: no version folder (expected {entry / '1' / MODEL_FILE})")
    version = max(folders)
    _inside(folders[version], root)
    onnx_path = folders[version] / MODEL_FILE
    _inside(onnx_path, root)
    if not onnx_path.is_file():
        # No fallback to an older version: serving something other than the newest export silently
        # would be worse than a clear refusal.
        raise RepositoryError(f"{onnx_path}: missing (version {version} is the highest version folder)")
    _check_external_data(onnx_path)
    return version, onnx_path


def _check_external_data(onnx_path: Path) -> None:
    """Refuse a model whose external data lies outside its folder: an absolute path, ``..``, or a
    symlink out."""
    folder = onnx_path.parent
    try:
        tensors = external_data(onnx_path)
    except OSError as exc:
        raise RepositoryError(f"{onnx_path}: cannot read: {exc}") from None
    for tensor, location in tensors:
        named = f"{onnx_path}: tensor {tensor!r} names external data {location!r}"
        if Path(location).is_absolute():
            raise RepositoryError(f"{named}, an absolute path; external data must lie in the model's folder {folder}")
        try:
            target = (folder / location).resolve()
            real = folder.resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise RepositoryError(f"{named}, which cannot be resolved: {exc}") from None
        if real not in target.parents:
            raise RepositoryError(f"{named}, which resolves to {target}, outside the model's folder {folder}")


def _read_labels(config: EntryConfig, entry: Path, file: Path, root: Path) -> tuple[str, ...]:
    if config.labels is None:
        return ()
    index, name = config.labels
    field = f"output[{index}].labels"
    path = entry / name
    if Path(os.path.normpath(entry)) not in Path(os.path.normpath(path)).parents:  # "/etc/x", "../x"
        raise RepositoryError(f"{file}: field {field!r} must name a file inside {entry}, got {name!r}")
    _inside(path, root)  # a symlink may point elsewhere in the repository, not out of it
    if not path.is_file():
        raise RepositoryError(f"{path}: missing (named by field {field!r} of {file.name})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RepositoryError(f"{path}: cannot read: {exc}") from None
    while lines and not lines[-1].strip():  # a trailing blank line is not a class
        lines.pop()
    output = config.outputs[index]
    classes = math.prod(output.shape)
    if len(lines) != classes:
        raise RepositoryError(
            f"{path}: {len(lines)} labels, but output {output.name!r} (field 'output[{index}].shape' "
            f"of {file.name}) has {classes} classes"
        )
    return tuple(lines)


def load_entry(
    entry: str | Path, overrides: Overrides | None = None, *, single: bool = False, name: str = ""
) -> ModelConfig:
    """Parse and check one repository entry (a folder ``REPO/NAME``).

    ``overrides`` may replace max_batch_size, max_queue_delay_us and preferred_batch_sizes
    (None values keep config.json's); preferred sizes are clamped to the resulting max_batch_size.
    ``single``: the entry is a whole repository (see :func:`is_single_entry`), named by its
    config.json or by ``name``, not by its folder.
    """
    return _load(Path(entry), _check_overrides(overrides or {}), single, name)


def _load(entry: Path, given: Mapping[str, Any], single: bool = False, name: str = "") -> ModelConfig:
    root = entry if single else entry.parent  # the repository folder: nothing read may lie outside it
    _inside(entry, root)
    file = entry / CONFIG_FILE
    _inside(file, root)
    if not file.is_file():
        raise RepositoryError(f"{file}: missing (every entry needs one; `cnnserve export` writes it)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RepositoryError(f"{file}: not valid JSON: {exc}") from None
    config = parse_config(data, file)
    if single:  # the repository is this one entry: no folder name to agree with
        config = dataclasses.replace(config, name=name or config.name)
    elif config.name != entry.name:
        # Clients address models by name and the server finds them by folder: the two must agree.
        raise RepositoryError(f"{file}: field 'name' is {config.name!r}, but the folder is {entry.name!r}")
    max_batch, delay, preferred = _overridden(config, given)
    version, onnx_path = _version(entry, root)
    return ModelConfig(
        name=config.name,
        architecture=config.architecture,
        family=config.family,
        task=config.task,
        version=version,
        onnx_path=onnx_path,
        inputs=config.inputs,
        outputs=config.outputs,
        max_batch_size=max_batch,
        max_queue_delay_us=delay,
        preferred_batch_sizes=preferred,
        instance_count=config.instance_count,
        labels=_read_labels(config, entry, file, root),
        preprocessing=config.preprocessing,
        facts=config.facts,
        trained=bool(config.weights["trained"]),
        weights_source=str(config.weights.get("source", "")),
        raw=data,
    )


def scan(
    repo: str | Path, overrides: Overrides | None = None, *, name: str = ""
) -> tuple[list[ModelConfig], dict[str, str]]:
    """Every entry of ``repo``, by name: the good ones, and name -> reason for the rest.

    Hidden folders are skipped: the exporter stages entries in ``.NAME.xxxx`` before renaming them
    into place, and keeps the replaced one as ``.NAME.old.PID`` for a moment. Files (a README) are
    skipped too. A repository that is itself one entry (KServe's ``/mnt/models``) is that entry,
    named ``name`` if given. A missing repository, or overrides that are wrong for every entry,
    raise.
    """
    given = _check_overrides(overrides or {})
    good: list[ModelConfig] = []
    bad: dict[str, str] = {}
    single = is_single_entry(repo)
    for entry_name, entry in entries(repo, name).items():
        try:
            good.append(_load(entry, given, single, name))
        except (RepositoryError, OSError) as exc:
            bad[entry_name] = str(exc)
    return good, bad
