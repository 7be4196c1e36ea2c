"""Every architecture against the numbers the notes and the papers publish.

Shapes, parameters and MACs come from running the real modules (cnnserve.builders.summary); the
expected values here are the published ones, so a wrong kernel, stride or width fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnserve import builders
from cnnserve.builders.summary import Summary, summary

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def summaries() -> dict[str, Summary]:
    return {name: summary(name) for name in builders.names()}


def _volumes(s: Summary) -> dict[str, str]:
    return {r.name: r.volume for r in s.rows}


def test_alexnet_volumes_match_the_notes(summaries: dict[str, Summary]) -> None:
    rows = [(r.layer, r.volume, r.parameters) for r in summaries["alexnet"].listed_rows()]
    assert rows[:3] == [
        ("conv 11x11/4 p0, 96", "55x55x96", 34_944),  # CONV1: (11*11*3+1)*96
        ("max pool 3x3/2", "27x27x96", 0),  # POOL1
        ("norm (LRN, n=5)", "27x27x96", 0),  # NORM1
    ]
    volumes = [v for _, v, _ in rows]
    assert volumes == [
        "55x55x96", "27x27x96", "27x27x96",
        "27x27x256", "13x13x256", "13x13x256",
        "13x13x384", "13x13x384", "13x13x256", "6x6x256",
        "4096", "4096", "1000",
    ]  # fmt: skip


def test_zfnet_volumes_follow_the_paper(summaries: dict[str, Summary]) -> None:
    volumes = [r.volume for r in summaries["zfnet"].listed_rows()]
    assert volumes[:6] == ["110x110x96", "55x55x96", "55x55x96", "26x26x256", "13x13x256", "13x13x256"]
    assert volumes[6:10] == ["13x13x512", "13x13x1024", "13x13x512", "6x6x512"]


def test_vgg16_rows_match_the_notes_table(summaries: dict[str, Summary]) -> None:
    """The notes' VGG-16 table: memory (activations) and parameters of every layer."""
    expected = [
        ("224x224x64", 3_211_264, 1_728), ("224x224x64", 3_211_264, 36_864), ("112x112x64", 802_816, 0),
        ("112x112x128", 1_605_632, 73_728), ("112x112x128", 1_605_632, 147_456), ("56x56x128", 401_408, 0),
        ("56x56x256", 802_816, 294_912), ("56x56x256", 802_816, 589_824), ("56x56x256", 802_816, 589_824),
        ("28x28x256", 200_704, 0),
        ("28x28x512", 401_408, 1_179_648), ("28x28x512", 401_408, 2_359_296), ("28x28x512", 401_408, 2_359_296),
        ("14x14x512", 100_352, 0),
        ("14x14x512", 100_352, 2_359_296), ("14x14x512", 100_352, 2_359_296), ("14x14x512", 100_352, 2_359_296),
        ("7x7x512", 25_088, 0),
        ("7x7x512", 25_088, 0),  # torchvision's adaptive pool: identity at 224x224
        ("4096", 4_096, 102_760_448), ("4096", 4_096, 16_777_216), ("1000", 1_000, 4_096_000),
    ]  # fmt: skip
    rows = summaries["vgg_d"].listed_rows()
    # The notes count weights without biases; the biases are the layer's output channels.
    actual = [(r.volume, r.activations, r.parameters - (r.output_shape[0] if r.parameters else 0)) for r in rows]
    assert actual == expected


@pytest.mark.parametrize(
    ("name", "stages"),
    [
        ("resnet18", ["56x56x64", "28x28x128", "14x14x256", "7x7x512"]),
        ("resnet50", ["56x56x256", "28x28x512", "14x14x1024", "7x7x2048"]),
        ("resnet152", ["56x56x256", "28x28x512", "14x14x1024", "7x7x2048"]),
        ("plain34", ["56x56x64", "28x28x128", "14x14x256", "7x7x512"]),
        ("cifar_resnet20", ["32x32x16", "16x16x32", "8x8x64"]),
        ("cifar_resnet110", ["32x32x16", "16x16x32", "8x8x64"]),
    ],
)
def test_resnet_stage_sizes(name: str, stages: list[str], summaries: dict[str, Summary]) -> None:
    # The last layer of each stage's last block gives the stage's output volume.
    rows = summaries[name].rows
    last_conv_of_stage = []
    for i in range(1, len(stages) + 1):
        in_stage = [r for r in rows if r.name.startswith(f"layer{i}.") and r.layer.startswith("conv")]
        last_conv_of_stage.append(in_stage[-1].volume)
    assert last_conv_of_stage == stages
    stem = {"resnet": "112x112x64", "cifar": "32x32x16"}["cifar" if name.startswith("cifar") else "resnet"]
    assert rows[0].volume == stem


# (name, weight layers, parameters low..high, MACs low..high); published figures:
# VGG Table 2 (133/133/133/134/138/144 M), ResNet paper and torchvision (11.7/21.8/25.6/44.5/60.2 M,
# 1.8/3.6/3.8-4.1/7.6-7.8/11.3-11.6 G), CIFAR ResNets (0.27/0.46/0.66/0.85/1.7 M), LeNet-5 (60 K),
# AlexNet (~60 M, ~0.7-1.1 G for the one-tower 227 version), GoogLeNet (~6.8 M, ~1.5 G), AlphaGo k=192.
PUBLISHED = [
    ("lenet5", 5, (58e3, 62e3), (0.3e6, 0.5e6)),
    ("alexnet", 8, (60e6, 63e6), (0.7e9, 1.2e9)),
    ("zfnet", 8, (100e6, 110e6), (2.2e9, 2.6e9)),
    ("vgg_a", 11, (132.5e6, 133.4e6), (7.4e9, 7.8e9)),
    ("vgg_a_lrn", 11, (132.5e6, 133.4e6), (7.4e9, 7.8e9)),
    ("vgg_b", 13, (132.6e6, 133.5e6), (11.1e9, 11.5e9)),
    ("vgg_c", 16, (133.5e6, 134.5e6), (11.5e9, 12.0e9)),
    ("vgg_d", 16, (138.0e6, 138.5e6), (15.3e9, 15.7e9)),
    ("vgg_e", 19, (143.5e6, 144.5e6), (19.4e9, 19.9e9)),
    ("googlenet", 22, (6.5e6, 7.1e6), (1.45e9, 1.65e9)),
    ("resnet18", 18, (11.6e6, 11.8e6), (1.75e9, 1.9e9)),
    ("resnet34", 34, (21.7e6, 21.9e6), (3.55e9, 3.75e9)),
    ("resnet50", 50, (25.4e6, 25.7e6), (3.8e9, 4.15e9)),
    ("resnet101", 101, (44.4e6, 44.7e6), (7.5e9, 7.9e9)),
    ("resnet152", 152, (60.0e6, 60.4e6), (11.3e9, 11.6e9)),
    ("plain18", 18, (11.4e6, 11.6e6), (1.75e9, 1.9e9)),
    ("plain34", 34, (21.5e6, 21.7e6), (3.55e9, 3.75e9)),
    ("cifar_resnet20", 20, (0.26e6, 0.28e6), (39e6, 43e6)),
    ("cifar_resnet32", 32, (0.45e6, 0.47e6), (66e6, 72e6)),
    ("cifar_resnet44", 44, (0.65e6, 0.67e6), (94e6, 100e6)),
    ("cifar_resnet56", 56, (0.84e6, 0.86e6), (122e6, 128e6)),
    ("cifar_resnet110", 110, (1.7e6, 1.75e6), (245e6, 260e6)),
    ("alphago_policy", 13, (3.85e6, 3.9e6), (1.35e9, 1.45e9)),
]


@pytest.mark.parametrize(("name", "depth", "params", "macs"), PUBLISHED)
def test_totals_match_the_published_figures(
    name: str, depth: int, params: tuple[float, float], macs: tuple[float, float], summaries: dict[str, Summary]
) -> None:
    s = summaries[name]
    assert s.weight_layers == depth
    assert params[0] <= s.parameters <= params[1]
    assert macs[0] <= s.macs <= macs[1]


def test_every_architecture_has_a_published_figure() -> None:
    assert sorted(n for n, *_ in PUBLISHED) == sorted(builders.names())


def test_alphago_parameters_exactly() -> None:
    k = 192
    expected = (48 * 25 * k + k) + 11 * (k * k * 9 + k) + k + 361  # conv1, conv2-12, 1x1 conv, position bias
    assert summary("alphago_policy").parameters == expected


def test_summary_parameters_equal_the_modules_parameters() -> None:
    for name in ("resnet50", "vgg_c", "cifar_resnet56", "lenet5"):
        net = builders.build(name)
        assert summary(name).parameters == sum(p.numel() for p in net.parameters())


def test_googlenet_aux_heads_exist_only_in_training() -> None:
    torch.manual_seed(0)
    net = builders.build("googlenet").train()
    outs = net(torch.randn(2, 3, 224, 224))
    assert isinstance(outs, tuple) and [o.shape for o in outs] == [(2, 1000)] * 3
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    # The inference graph's parameters exclude the two aux heads.
    aux = sum(p.numel() for n, p in net.named_parameters() if n.startswith("aux"))
    assert aux > 0
    assert summary("googlenet").parameters == sum(p.numel() for p in net.parameters()) - aux


def test_googlenet_5x5_branches_are_5x5() -> None:
    net = builders.build("googlenet")
    kernels = {m.branch3[1][0].kernel_size for n, m in net.named_children() if n.startswith("inception")}
    assert kernels == {(5, 5)}


def test_plain_nets_have_no_shortcuts() -> None:
    net = builders.build("plain18")
    assert not any("downsample" in n for n, _ in net.named_modules())
    assert all(not block.shortcut for stage in (net.layer1, net.layer2) for block in stage)


def test_cifar_shortcuts_are_parameter_free() -> None:
    net = builders.build("cifar_resnet20")
    assert sum(p.numel() for n, p in net.named_parameters() if "downsample" in n) == 0


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg13", "vgg16", "vgg19"]
)
def test_torchvision_names_and_shapes(name: str) -> None:
    expected = json.loads((DATA / "torchvision_state_dicts.json").read_text())[name]
    with torch.device("meta"):
        net = builders.build(name)
    actual = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert actual == expected
