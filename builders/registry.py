"""The architecture registry: canonical names, aliases and what each network takes as input.

Builders register themselves with :func:`register`; everything else (summary, export, the CLI)
looks networks up here by name, so a new family needs no change outside its own module.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class UnknownArchitectureError(KeyError):
    """Raised for a name that is neither a canonical name nor an alias."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class UnknownOptionError(TypeError):
    """Raised for a builder option the architecture does not take."""


@dataclass(frozen=True)
class Preprocessing:
    """How an encoded image becomes the network's input tensor (torchvision's convention).

    Pixels are scaled to [0, 1], the shorter side is resized to ``resize``, the centre
    ``crop`` x ``crop`` square is kept, then each channel is normalised with ``mean``/``std``.
    """

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color: str = "RGB"  # Pillow mode: "RGB" or "L" (grey)
    interpolation: str = "bilinear"

    def as_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "color": self.color,
            "interpolation": self.interpolation,
            "scale": 1.0 / 255.0,
        }


@dataclass(frozen=True)
class ArchSpec:
    """What the rest of cnnserve needs to know about one registered architecture."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # one item, channels first, no batch axis
    task: str  # "classification" or "policy"
    paper: str
    description: str
    num_classes: int = 1000
    labels: str = "imagenet"  # "imagenet", "digits", "cifar10" or "" for non-classifiers
    input_name: str = "input"
    output_name: str = "logits"
    preprocessing: Preprocessing | None = None
    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (1, 8, 32)
    max_queue_delay_us: int = 2000
    aliases: tuple[str, ...] = ()
    torchvision_compatible: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> list[str]:
        """Keyword options the builder accepts (besides the defaults already applied)."""
        params = inspect.signature(self.builder).parameters.values()
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) or "no options"
            raise UnknownOptionError(f"{self.name} does not take option(s) {', '.join(unknown)}; it takes: {takes}")

    def build(self, **options: Any) -> nn.Module:
        self.check_options(options)
        return self.builder(**{**self.defaults, **options})


_REGISTRY: dict[str, ArchSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: ArchSpec) -> ArchSpec:
    for key in (spec.name, *spec.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"architecture name {key!r} registered twice")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


# The notes' order, which is also the order of every listing.
FAMILIES = ("lenet", "alexnet", "vgg", "googlenet", "resnet", "alphago")


def _load_families() -> None:
    # Importing a family module registers its architectures; lazily, so that the family
    # modules can import this one.
    for family in FAMILIES:
        importlib.import_module(f"cnnserve.builders.{family}")


def names() -> list[str]:
    """Canonical names in the notes' order: by family, then as each family registers them (so
    whichever family module a caller imported first)."""
    _load_families()
    return sorted(_REGISTRY, key=lambda name: FAMILIES.index(_REGISTRY[name].builder.__module__.rpartition(".")[2]))


def get(name: str) -> ArchSpec:
    _load_families()
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownArchitectureError(
            f"unknown architecture {name!r}; valid names: {', '.join(names())}"
            f" (aliases: {', '.join(sorted(_ALIASES))})"
        )
    return _REGISTRY[key]


def canonical_or_alias(name: str) -> str:
    """``name`` normalised as :func:`get` reads it, kept as an alias where it is one."""
    key = name.strip().lower().replace("-", "_")
    get(key)  # unknown names fail here, listing the valid ones
    return key


def build(name: str, **options: Any) -> nn.Module:
    """Build ``name`` in eval mode with random (seeded by the caller) weights."""
    return get(name).build(**options).eval()
