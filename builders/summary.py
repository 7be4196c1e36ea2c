"""Per-layer summaries, measured by running the real module on one input.

Forward hooks record what each layer actually produced (output volume, parameters it owns,
multiply-accumulates it did); depth comes from tracing the module with torch.fx and taking the
longest chain of weight layers, so parallel branches (GoogLeNet's inception branches, ResNet's
projection shortcuts) do not inflate it. Nothing here is a hand-written table.

Activation memory follows the notes' VGG table: the input plus the output of every listed layer
(convolution, fully connected, pooling, normalisation), at one image and 4 bytes a value;
element-wise layers that can run in place (ReLU, batch norm, dropout, residual additions) are not
counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.utils.hooks import RemovableHandle

from cnnserve.builders import registry

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
# Layers the notes' tables list; the rest (ReLU, BN, dropout, flatten, ...) show with --all only.
LISTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.Linear,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.LocalResponseNorm,
)
BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class LayerRow:
    name: str  # module path in the network, e.g. "features.0"
    layer: str  # what it is, e.g. "conv 11x11/4, 96"
    output_shape: tuple[int, ...]  # one item, channels first
    activations: int
    parameters: int
    macs: int
    listed: bool  # shown in the notes-style table (False: only with --all)

    @property
    def volume(self) -> str:
        return volume(self.output_shape)


@dataclass(frozen=True)
class Summary:
    architecture: str
    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]
    weight_layers: int
    parameters: int
    macs: int
    activations: int

    @property
    def activation_bytes(self) -> int:
        return self.activations * BYTES_PER_VALUE

    def listed_rows(self, all_layers: bool = False) -> list[LayerRow]:
        return [r for r in self.rows if all_layers or r.listed]

    def to_dict(self, all_layers: bool = False) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "input_shape": list(self.input_shape),
            "input_volume": volume(self.input_shape),
            "layers": [
                {**asdict(r), "output_shape": list(r.output_shape), "volume": r.volume}
                for r in self.listed_rows(all_layers)
            ],
            "totals": {
                "weight_layers": self.weight_layers,
                "parameters": self.parameters,
                "macs": self.macs,
                "activations": self.activations,
                "activation_bytes": self.activation_bytes,
            },
        }


def volume(shape: tuple[int, ...]) -> str:
    """The notes' way of writing a volume: channels last, e.g. (96, 55, 55) -> "55x55x96"."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    return "x".join(str(d) for d in shape)


def describe(module: nn.Module) -> str:
    """A short, notes-style description of one layer."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        stride = module.stride[0]
        pad = module.padding[0] if isinstance(module.padding, tuple) else module.padding
        return f"conv {kh}x{kw}/{stride} p{pad}, {module.out_channels}"
    if isinstance(module, nn.Linear):
        return f"fc {module.out_features}"
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kind = "max" if isinstance(module, nn.MaxPool2d) else "avg"
        return f"{kind} pool {module.kernel_size}x{module.kernel_size}/{module.stride}"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "global avg pool" if module.output_size in ((1, 1), 1) else f"adaptive avg pool {module.output_size}"
    if isinstance(module, nn.LocalResponseNorm):
        return f"norm (LRN, n={module.size})"
    return type(module).__name__.lower()


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    per_item = output[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_item * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_item * module.in_features
    return 0


def weight_layer_depth(model: nn.Module) -> int:
    """Longest chain of convolution/linear layers from input to output (the papers' "depth")."""
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    depth: dict[torch.fx.Node, int] = {}
    for node in graph.nodes:
        before = max((depth[n] for n in node.all_input_nodes), default=0)
        is_weight = node.op == "call_module" and isinstance(modules[str(node.target)], WEIGHT_LAYERS)
        depth[node] = before + int(is_weight)
    outputs = [n for n in graph.nodes if n.op == "output"]
    return max(depth[n] for n in outputs)


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def summarize(model: nn.Module, input_shape: tuple[int, ...], architecture: str = "") -> Summary:
    """Run ``model`` once on a zero input of ``input_shape`` (one item) and collect every layer."""
    model = model.eval()
    names = {m: n for n, m in model.named_modules()}
    rows: list[LayerRow] = []
    counted: set[nn.Module] = set()
    extra_params = 0

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal extra_params
        own = sum(p.numel() for p in module.parameters(recurse=False))
        params = 0 if module in counted else own  # a module called twice owns its weights once
        counted.add(module)
        if next(module.children(), None) is not None:
            extra_params += params  # a container that owns parameters directly
            return
        if not isinstance(output, torch.Tensor):
            return
        rows.append(
            LayerRow(
                name=names[module],
                layer=describe(module),
                output_shape=tuple(output.shape[1:]),
                activations=output[0].numel(),
                parameters=params,
                macs=_macs(module, output),
                listed=isinstance(module, LISTED_LAYERS) or params > 0,
            )
        )

    handles: list[RemovableHandle] = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=_device_of(model)))
    finally:
        for h in handles:
            h.remove()
    listed = [r for r in rows if r.listed]
    first = 1
    for dim in input_shape:
        first *= dim
    return Summary(
        architecture=architecture,
        input_shape=tuple(input_shape),
        rows=tuple(rows),
        weight_layers=weight_layer_depth(model),
        parameters=sum(r.parameters for r in rows) + extra_params,
        macs=sum(r.macs for r in rows),
        activations=first + sum(r.activations for r in listed),
    )


def summary(name: str, **options: Any) -> Summary:
    """Build the registered architecture ``name`` and summarise it.

    The network is built on PyTorch's "meta" device: shapes, parameter counts and MACs are
    those of the real modules, but no weight is allocated or initialised (VGG-19's 144 million
    would take seconds), so listing every architecture stays fast.
    """
    spec = registry.get(name)
    with torch.device("meta"):
        model = spec.build(**options)
    return summarize(model, spec.input_shape, architecture=spec.name)
