"""VGG (Simonyan & Zisserman 2014): the six columns A, A-LRN, B, C, D, E of the paper's Table 1.

Each column is data: a list of conv widths, "M" for a 2x2/2 max pool, "LRN" for A-LRN's local
response normalisation, and ``(width, 1)`` for column C's 1x1 convolutions. All other
convolutions are 3x3, stride 1, pad 1. The classifier is FC-4096, FC-4096, FC-1000.

Module names and shapes follow torchvision's ``vgg11/13/16/19`` (``features.N``,
``classifier.{0,3,6}``), so a torchvision checkpoint of A, B, D or E loads unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnserve.builders.registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, Preprocessing, register

_Item = int | str | tuple[int, int]

CFGS: dict[str, list[_Item]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M",
          512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}  # fmt: skip


def make_layers(cfg: list[_Item]) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif item == "LRN":
            # Krizhevsky's parameters, as the VGG paper says of A-LRN.
            layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            width, kernel = item if isinstance(item, tuple) else (int(item), 3)
            layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Module, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        # Identity at 224x224 input; kept so that torchvision's module names line up.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(cfg: str, num_classes: int, dropout: float) -> VGG:
    return VGG(make_layers(CFGS[cfg]), num_classes=num_classes, dropout=dropout)


def vgg_a(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    return _vgg("A", num_classes, dropout)


def vgg_a_lrn(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    return _vgg("A-LRN", num_classes, dropout)


def vgg_b(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    return _vgg("B", num_classes, dropout)


def vgg_c(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    return _vgg("C", num_classes, dropout)


def vgg_d(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    return _vgg("D", num_classes, dropout)


def vgg_e(*, num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    return _vgg("E", num_classes, dropout)


_PREPROCESSING = Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)

for _builder, _column, _aliases, _tv in (
    (vgg_a, "A", ("vgg11",), True),
    (vgg_a_lrn, "A-LRN", (), False),
    (vgg_b, "B", ("vgg13",), True),
    (vgg_c, "C", (), False),
    (vgg_d, "D", ("vgg16",), True),
    (vgg_e, "E", ("vgg19",), True),
):
    register(
        ArchSpec(
            name=_builder.__name__,
            family="vgg",
            builder=_builder,
            input_shape=(3, 224, 224),
            task="classification",
            paper="Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, 2014",
            description=f"VGG configuration {_column}",
            preprocessing=_PREPROCESSING,
            aliases=_aliases,
            torchvision_compatible=_tv,
        )
    )
