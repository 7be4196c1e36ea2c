"""The registry: the canonical names (docs/architecture.md), aliases, and the errors users see."""

from __future__ import annotations

import pytest

from cnnserve import builders
from cnnserve.builders.alphago import alphago_policy

CANONICAL = [
    "lenet5", "alexnet", "zfnet",
    "vgg_a", "vgg_a_lrn", "vgg_b", "vgg_c", "vgg_d", "vgg_e",
    "googlenet",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34",
    "cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56", "cifar_resnet110",
    "alphago_policy",
]  # fmt: skip


def test_every_canonical_name_is_registered_in_the_notes_order() -> None:
    assert builders.names() == CANONICAL


@pytest.mark.parametrize(
    ("alias", "name"), [("vgg11", "vgg_a"), ("vgg13", "vgg_b"), ("vgg16", "vgg_d"), ("vgg19", "vgg_e")]
)
def test_vgg_aliases(alias: str, name: str) -> None:
    assert builders.get(alias).name == name


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(builders.UnknownArchitectureError) as info:
        builders.get("resnet51")
    message = str(info.value)
    assert "resnet51" in message
    for name in CANONICAL:
        assert name in message


def test_unknown_option_names_the_options_taken() -> None:
    with pytest.raises(
        builders.UnknownOptionError, match=r"alphago_policy does not take option\(s\) filters; it takes: k"
    ):
        builders.build("alphago_policy", filters=3)


@pytest.mark.parametrize("k", [128, 256, 384])
def test_alphago_k_is_an_option(k: int) -> None:
    net = alphago_policy(k=k)
    first = net.features[0]
    assert first.out_channels == k
    assert builders.get("alphago_policy").options == ["k"]


def test_alphago_rejects_nonpositive_k() -> None:
    with pytest.raises(ValueError, match=r"k .* must be positive"):
        alphago_policy(k=0)
