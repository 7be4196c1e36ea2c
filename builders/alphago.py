"""The AlphaGo policy network (Silver et al. 2016, Methods, "Neural network architecture").

Input: the 48 feature planes of Extended Data Table 2 on the 19x19 board (channels first here,
48x19x19). Layer 1 zero-pads to 23x23 and convolves k 5x5 filters (stride 1) with a rectifier;
layers 2 to 12 zero-pad to 21x21 and convolve k 3x3 filters with a rectifier; layer 13 convolves
one 1x1 filter, adds a separate bias for each of the 361 points, and a softmax turns the result
into move probabilities. The match version used k=192; k is a builder option.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnserve.builders.registry import ArchSpec, register

BOARD = 19
PLANES = 48


class PositionBias(nn.Module):
    """A learned bias for each board point (the final layer's "different bias for each position")."""

    def __init__(self, size: int = BOARD) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 1, size, size))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class PolicyNetwork(nn.Module):
    def __init__(self, filters: int = 192, layers: int = 13, planes: int = PLANES) -> None:
        super().__init__()
        convs: list[nn.Module] = [nn.Conv2d(planes, filters, 5, padding=2), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU(inplace=True)]
        convs += [nn.Conv2d(filters, 1, 1, bias=False), PositionBias()]
        self.features = nn.Sequential(*convs)
        self.flatten = nn.Flatten()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.softmax(self.flatten(self.features(x)))


def alphago_policy(*, k: int = 192) -> PolicyNetwork:
    if k < 1:
        raise ValueError(f"k (filters per layer) must be positive, got {k}")
    return PolicyNetwork(filters=k)


register(
    ArchSpec(
        name="alphago_policy",
        family="alphago",
        builder=alphago_policy,
        input_shape=(PLANES, BOARD, BOARD),
        task="policy",
        paper="Silver et al., Mastering the game of Go with deep neural networks and tree search, 2016",
        description="AlphaGo SL policy network: 13 layers, k filters (192 by default), softmax over 361 points",
        num_classes=BOARD * BOARD,
        labels="",
        input_name="planes",
        output_name="probabilities",
        max_batch_size=128,
        preferred_batch_sizes=(1, 16, 64),
        max_queue_delay_us=1000,
    )
)
