"""LeNet-5 (LeCun et al. 1998): CONV-POOL-CONV-POOL-CONV-FC-FC on a 32x32 grey image.

C1 6@5x5 -> S2 2x2/2 -> C3 16@5x5 -> S4 2x2/2 -> C5 120@5x5 -> F6 84 -> 10 outputs, tanh
activations and average-pool subsampling as in the paper. Two simplifications the notes make
too: C3 connects to all six S2 maps (the paper's sparse connection table is not reproduced) and
the output layer is a plain linear layer instead of Euclidean RBF units. About 61.7 thousand
parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnserve.builders.registry import ArchSpec, Preprocessing, register

# Mean and std of the 32x32 renderings of scikit-learn's digits (see builders/digits.py).
DIGITS_MEAN = (0.3057,)
DIGITS_STD = (0.3235,)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),  # C1: 28x28x6
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # S2: 14x14x6
            nn.Conv2d(6, 16, kernel_size=5),  # C3: 10x10x16
            nn.Tanh(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # S4: 5x5x16
            nn.Conv2d(16, 120, kernel_size=5),  # C5: 1x1x120
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(120, 84),  # F6
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def lenet5(*, num_classes: int = 10) -> LeNet5:
    return LeNet5(num_classes=num_classes)


register(
    ArchSpec(
        name="lenet5",
        family="lenet",
        builder=lenet5,
        input_shape=(1, 32, 32),
        task="classification",
        paper="LeCun et al., Gradient-based learning applied to document recognition, 1998",
        description="LeNet-5, 32x32 grey digits, trained at export on scikit-learn's digits",
        num_classes=10,
        labels="digits",
        preprocessing=Preprocessing(resize=32, crop=32, mean=DIGITS_MEAN, std=DIGITS_STD, color="L"),
        max_batch_size=256,
        preferred_batch_sizes=(1, 16, 64),
        # A request that finds the model idle runs at once (see server/batching/policy.py); under load
        # a short wait for company lets one hop to ONNX Runtime serve several requests
        # (bench/vs_echo.py compares delays).
        max_queue_delay_us=2000,
    )
)
