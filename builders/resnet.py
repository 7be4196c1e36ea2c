"""ResNets (He et al. 2015): ImageNet ResNet-18/34/50/101/152, the plain-18/34 baselines of the
paper's Figure 4, and the CIFAR-10 family of section 4.2 (6n+2 layers).

Variants are data: ``(block, [blocks per stage])`` for ImageNet, ``n`` for CIFAR. The ImageNet
networks use torchvision's module names and shapes (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so torchvision checkpoints load into them. Projection
shortcuts (option B) are used where the shape changes; the plain nets are the same stacks with
the shortcuts removed. The CIFAR nets use parameter-free shortcuts (option A: subsample, then
zero-pad the new channels), as the paper does for CIFAR-10.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnserve.builders.registry import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArchSpec,
    Preprocessing,
    register,
)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; the shortcut adds the input (or its projection) before the last ReLU."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, shortcut: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, as torchvision's "ResNet v1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, shortcut: bool = True
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


_Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """The ImageNet stem (7x7/2 conv, 3x3/2 max pool), four stages, global average pool, FC."""

    def __init__(self, block: _Block, layers: list[int], num_classes: int = 1000, shortcut: bool = True) -> None:
        super().__init__()
        self.inplanes = 64
        self.shortcut = shortcut
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: _Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if self.shortcut and (stride != 1 or self.inplanes != planes * block.expansion):
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.shortcut)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, shortcut=self.shortcut) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


IMAGENET_CFGS: dict[str, tuple[_Block, list[int], bool]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], True),
    "resnet34": (BasicBlock, [3, 4, 6, 3], True),
    "resnet50": (Bottleneck, [3, 4, 6, 3], True),
    "resnet101": (Bottleneck, [3, 4, 23, 3], True),
    "resnet152": (Bottleneck, [3, 8, 36, 3], True),
    "plain18": (BasicBlock, [2, 2, 2, 2], False),
    "plain34": (BasicBlock, [3, 4, 6, 3], False),
}


def _resnet(name: str, num_classes: int) -> ResNet:
    block, layers, shortcut = IMAGENET_CFGS[name]
    return ResNet(block, layers, num_classes=num_classes, shortcut=shortcut)


def resnet18(*, num_classes: int = 1000) -> ResNet:
    return _resnet("resnet18", num_classes)


def resnet34(*, num_classes: int = 1000) -> ResNet:
    return _resnet("resnet34", num_classes)


def resnet50(*, num_classes: int = 1000) -> ResNet:
    return _resnet("resnet50", num_classes)


def resnet101(*, num_classes: int = 1000) -> ResNet:
    return _resnet("resnet101", num_classes)


def resnet152(*, num_classes: int = 1000) -> ResNet:
    return _resnet("resnet152", num_classes)


def plain18(*, num_classes: int = 1000) -> ResNet:
    return _resnet("plain18", num_classes)


def plain34(*, num_classes: int = 1000) -> ResNet:
    return _resnet("plain34", num_classes)


class ShortcutA(nn.Module):
    """Parameter-free shortcut: take every other pixel, zero-pad the extra channels."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        half = self.extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))


class CifarBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module = (
            nn.Identity() if stride == 1 and inplanes == planes else ShortcutA(planes - inplanes)
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class CifarResNet(nn.Module):
    """3x3 conv of 16, then three stages of n blocks on 32x32, 16x16 and 8x8 maps (16/32/64
    filters), global average pool and a 10-way FC: 6n+2 weight layers."""

    def __init__(self, n: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        stages: list[nn.Module] = []
        inplanes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [CifarBasicBlock(inplanes, planes, stride)]
            blocks += [CifarBasicBlock(planes, planes) for _ in range(1, n)]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


CIFAR_DEPTHS = {
    "cifar_resnet20": 3,
    "cifar_resnet32": 5,
    "cifar_resnet44": 7,
    "cifar_resnet56": 9,
    "cifar_resnet110": 18,
}


def cifar_resnet20(*, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(CIFAR_DEPTHS["cifar_resnet20"], num_classes)


def cifar_resnet32(*, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(CIFAR_DEPTHS["cifar_resnet32"], num_classes)


def cifar_resnet44(*, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(CIFAR_DEPTHS["cifar_resnet44"], num_classes)


def cifar_resnet56(*, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(CIFAR_DEPTHS["cifar_resnet56"], num_classes)


def cifar_resnet110(*, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(CIFAR_DEPTHS["cifar_resnet110"], num_classes)


_PAPER = "He, Zhang, Ren, Sun, Deep Residual Learning for Image Recognition, 2015"
_IMAGENET = Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
_CIFAR = Preprocessing(resize=32, crop=32, mean=CIFAR10_MEAN, std=CIFAR10_STD)

_imagenet: list[tuple[Any, str, bool]] = [
    (resnet18, "ResNet-18, basic blocks [2, 2, 2, 2]", True),
    (resnet34, "ResNet-34, basic blocks [3, 4, 6, 3]", True),
    (resnet50, "ResNet-50, bottleneck blocks [3, 4, 6, 3]", True),
    (resnet101, "ResNet-101, bottleneck blocks [3, 4, 23, 3]", True),
    (resnet152, "ResNet-152, bottleneck blocks [3, 8, 36, 3]", True),
    (plain18, "plain-18: ResNet-18's stack without shortcuts", False),
    (plain34, "plain-34: ResNet-34's stack without shortcuts", False),
]
for _builder, _description, _tv in _imagenet:
    register(
        ArchSpec(
            name=_builder.__name__,
            family="resnet",
            builder=_builder,
            input_shape=(3, 224, 224),
            task="classification",
            paper=_PAPER,
            description=_description,
            preprocessing=_IMAGENET,
            torchvision_compatible=_tv,
        )
    )
for _builder in (cifar_resnet20, cifar_resnet32, cifar_resnet44, cifar_resnet56, cifar_resnet110):
    _n = CIFAR_DEPTHS[_builder.__name__]
    register(
        ArchSpec(
            name=_builder.__name__,
            family="resnet",
            builder=_builder,
            input_shape=(3, 32, 32),
            task="classification",
            paper=_PAPER,
            description=f"CIFAR-10 ResNet, n={_n}: {6 * _n + 2} layers, option A shortcuts",
            num_classes=10,
            labels="cifar10",
            preprocessing=_CIFAR,
            max_batch_size=256,
            preferred_batch_sizes=(1, 16, 64),
            max_queue_delay_us=1000,
        )
    )
