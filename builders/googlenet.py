"""GoogLeNet, Inception v1 (Szegedy et al. 2014), as the paper's Table 1 and Figure 3 give it.

Unlike torchvision's version this one is the paper's: no batch normalisation, local response
normalisation after the first pool and after conv3, and a real 5x5 convolution in the 5x5 branch
(torchvision's uses 3x3 there). The two auxiliary classifiers (after 4a and 4d) are built and
run in training mode only; in eval mode, and so in every exported graph, they are skipped.
22 weight layers deep, about 7 million parameters for inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnserve.builders.registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, Preprocessing, register


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2), nn.ReLU(inplace=True)
    )


@dataclass(frozen=True)
class InceptionCfg:
    """One row of Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj."""

    c1x1: int
    c3x3_reduce: int
    c3x3: int
    c5x5_reduce: int
    c5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.c1x1 + self.c3x3 + self.c5x5 + self.pool_proj


TABLE1: dict[str, InceptionCfg] = {
    "3a": InceptionCfg(64, 96, 128, 16, 32, 32),
    "3b": InceptionCfg(128, 128, 192, 32, 96, 64),
    "4a": InceptionCfg(192, 96, 208, 16, 48, 64),
    "4b": InceptionCfg(160, 112, 224, 24, 64, 64),
    "4c": InceptionCfg(128, 128, 256, 24, 64, 64),
    "4d": InceptionCfg(112, 144, 288, 32, 64, 64),
    "4e": InceptionCfg(256, 160, 320, 32, 128, 128),
    "5a": InceptionCfg(256, 160, 320, 32, 128, 128),
    "5b": InceptionCfg(384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    def __init__(self, in_channels: int, cfg: InceptionCfg) -> None:
        super().__init__()
        self.branch1 = _conv(in_channels, cfg.c1x1, 1)
        self.branch2 = nn.Sequential(_conv(in_channels, cfg.c3x3_reduce, 1), _conv(cfg.c3x3_reduce, cfg.c3x3, 3))
        self.branch3 = nn.Sequential(_conv(in_channels, cfg.c5x5_reduce, 1), _conv(cfg.c5x5_reduce, cfg.c5x5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv(in_channels, cfg.pool_proj, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """5x5/3 average pool, 1x1 conv of 128, FC 1024, dropout 0.7, linear classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = _conv(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, dropout: float = 0.4) -> None:
        super().__init__()
        self.conv1 = _conv(3, 64, 7, stride=2)  # 112x112x64
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 56x56x64
        self.norm1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        self.conv2 = _conv(64, 64, 1)  # 3x3 reduce
        self.conv3 = _conv(64, 192, 3)  # 56x56x192
        self.norm2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 28x28x192
        channels = 192
        blocks: dict[str, nn.Module] = {}
        for key, cfg in TABLE1.items():
            blocks[key] = Inception(channels, cfg)
            channels = cfg.out_channels
        self.inception3a, self.inception3b = blocks["3a"], blocks["3b"]  # 28x28x480
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 14x14x480
        self.inception4a, self.inception4b, self.inception4c = blocks["4a"], blocks["4b"], blocks["4c"]
        self.inception4d, self.inception4e = blocks["4d"], blocks["4e"]  # 14x14x832
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 7x7x832
        self.inception5a, self.inception5b = blocks["5a"], blocks["5b"]  # 7x7x1024
        self.aux1 = InceptionAux(TABLE1["4a"].out_channels, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(TABLE1["4d"].out_channels, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)  # the paper's DistBelief-era nets used Xavier init
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        x = self.norm1(self.maxpool1(self.conv1(x)))
        x = self.maxpool2(self.norm2(self.conv3(self.conv2(x))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.training and self.aux1 is not None else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.training and self.aux2 is not None else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux1 is not None and aux2 is not None:
            return logits, aux2, aux1
        return logits


def googlenet(*, num_classes: int = 1000, aux_logits: bool = True, dropout: float = 0.4) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, dropout=dropout)


register(
    ArchSpec(
        name="googlenet",
        family="googlenet",
        builder=googlenet,
        input_shape=(3, 224, 224),
        task="classification",
        paper="Szegedy et al., Going Deeper with Convolutions, 2014",
        description="GoogLeNet (Inception v1): 9 inception modules, 5x5 branches, aux heads in training only",
        preprocessing=Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        aliases=("inception_v1",),
    )
)
