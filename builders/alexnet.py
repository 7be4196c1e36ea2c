"""AlexNet (Krizhevsky et al. 2012) as the notes draw it, and ZFNet (Zeiler & Fergus 2013).

AlexNet here is the notes' "full (simplified)" one-tower network on a 227x227x3 input:

    CONV1 96 11x11/4 p0 -> 55x55x96     POOL1 3x3/2 -> 27x27x96    NORM1
    CONV2 256 5x5/1 p2 -> 27x27x256     POOL2 3x3/2 -> 13x13x256   NORM2
    CONV3 384 3x3/1 p1, CONV4 384 3x3/1 p1, CONV5 256 3x3/1 p1 -> 13x13x256
    POOL3 3x3/2 -> 6x6x256   FC6 4096   FC7 4096   FC8 1000

ZFNet is "AlexNet but CONV1 7x7 stride 2, CONV3,4,5 with 512, 1024, 512 filters". The rest of
its volumes follow the ZF paper's figure (224x224 input, CONV1 pad 1 -> 110x110, CONV2 stride 2,
pools that round up so that 110 -> 55 and 26 -> 13), which keeps FC6 at 6x6x512 inputs; keeping
AlexNet's CONV2 stride 1 instead would leave a 13x13 map before FC6 and a 350M-parameter FC6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnserve.builders.registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, Preprocessing, register


@dataclass(frozen=True)
class _Conv:
    out: int
    kernel: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class _Pool:
    ceil: bool = False


class _Norm:
    """Local response normalisation as in AlexNet section 3.3 (n=5, alpha=1e-4, beta=0.75, k=2)."""


_Layer = _Conv | _Pool | type[_Norm]

CFGS: dict[str, list[_Layer]] = {
    "alexnet": [
        _Conv(96, 11, 4, 0), _Pool(), _Norm,
        _Conv(256, 5, 1, 2), _Pool(), _Norm,
        _Conv(384, 3, 1, 1), _Conv(384, 3, 1, 1), _Conv(256, 3, 1, 1), _Pool(),
    ],
    "zfnet": [
        _Conv(96, 7, 2, 1), _Pool(ceil=True), _Norm,
        _Conv(256, 5, 2, 0), _Pool(ceil=True), _Norm,
        _Conv(512, 3, 1, 1), _Conv(1024, 3, 1, 1), _Conv(512, 3, 1, 1), _Pool(),
    ],
}  # fmt: skip


def _make_features(cfg: list[_Layer]) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in cfg:
        if isinstance(item, _Conv):
            layers += [nn.Conv2d(channels, item.out, item.kernel, item.stride, item.padding), nn.ReLU(inplace=True)]
            channels = item.out
        elif isinstance(item, _Pool):
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=item.ceil))
        else:
            layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    """One tower, LRN after the first two pools, dropout 0.5 before FC6 and FC7 (training only)."""

    def __init__(self, cfg: list[_Layer], num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _make_features(cfg)
        last = [c for c in cfg if isinstance(c, _Conv)][-1].out
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(last * 6 * 6, 4096),  # FC6
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),  # FC7
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),  # FC8
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def alexnet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(CFGS["alexnet"], num_classes=num_classes, dropout=dropout)


def zfnet(*, num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    return AlexNet(CFGS["zfnet"], num_classes=num_classes, dropout=dropout)


register(
    ArchSpec(
        name="alexnet",
        family="alexnet",
        builder=alexnet,
        input_shape=(3, 227, 227),
        task="classification",
        paper="Krizhevsky, Sutskever, Hinton, ImageNet Classification with Deep CNNs, 2012",
        description="AlexNet, one tower, 227x227 input, two LRN layers",
        preprocessing=Preprocessing(resize=256, crop=227, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )
)
register(
    ArchSpec(
        name="zfnet",
        family="alexnet",
        builder=zfnet,
        input_shape=(3, 224, 224),
        task="classification",
        paper="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, 2013",
        description="ZFNet: AlexNet with CONV1 7x7/2 and CONV3-5 of 512/1024/512 filters",
        preprocessing=Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )
)
