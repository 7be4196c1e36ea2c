"""Class names written to ``labels.txt`` beside each exported classifier."""

from __future__ import annotations

from importlib import resources

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS = tuple(str(d) for d in range(10))


def imagenet() -> list[str]:
    """The 1000 ImageNet-1k class names in the usual index order (torchvision's list)."""
    text = resources.files("cnnserve.builders").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def for_set(label_set: str) -> list[str]:
    """Labels for an :attr:`ArchSpec.labels` value; empty for networks that are not classifiers."""
    if label_set == "imagenet":
        return imagenet()
    if label_set == "cifar10":
        return list(CIFAR10)
    if label_set == "digits":
        return list(DIGITS)
    if label_set == "":
        return []
    raise ValueError(f"unknown label set {label_set!r}")
