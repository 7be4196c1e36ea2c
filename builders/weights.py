"""Where an exported network's weights come from: a user's checkpoint, or random ones made usable.

Random weights are the default (nothing can be downloaded); their batch-norm statistics are
calibrated on Gaussian noise so that activations keep a sensible scale through 150 layers
(without it a random ResNet-152 produces logits around 1e8, which makes every softmax one-hot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the network; the message lists every mismatch."""


def _state_dict_of(obj: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return inner
        return obj
    raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, expected a state_dict (a mapping of tensors)")


def load_checkpoint(model: nn.Module, path: str | Path) -> str:
    """Load ``path`` (``torch.load(weights_only=True)``) into ``model``; return its sha256.

    Raises :class:`CheckpointError` naming missing, unexpected and mismatched keys before any
    weight is changed.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} could not be read with weights_only=True: {exc}") from exc
    state = {k.removeprefix("module."): v for k, v in _state_dict_of(raw).items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} (checkpoint {tuple(state[k].shape)}, network {tuple(expected[k].shape)})"
        for k in expected
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mismatched", mismatched)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                parts.append(f"{label} keys: {shown}")
        raise CheckpointError(f"checkpoint {path} does not fit the network: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def calibrate_batchnorm(model: nn.Module, input_shape: tuple[int, ...], *, seed: int = 0, batch: int = 8) -> bool:
    """Set every BatchNorm's running statistics from one pass over Gaussian noise.

    Returns whether the network has batch normalisation at all. Only running statistics
    change; learned weights are untouched and the model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass gives the batch's own statistics
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        model(torch.randn(batch, *input_shape, generator=generator))
    model.eval()
    for m in norms:
        m.momentum = 0.1
    return True
