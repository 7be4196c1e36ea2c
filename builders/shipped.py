"""Weights that ship with cnnserve, for networks nobody could bring weights for.

AlphaGo's policy network was never published, so cnnserve trains its own (``cnnserve go-train``
on GNU Go self-play) and ships the result in ``trained/``: the weights in half precision
(``NAME.pt``, a state_dict), their provenance (``NAME.json``: the data, the training, the
held-out accuracy) and the held-out games that accuracy was measured on (``NAME-held-out/``),
so that anyone can check it. Export uses them by default when the builder options asked for
match the shipped network's (``--random-weights`` to do without).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

TRAINED = Path(__file__).resolve().parent / "trained"


@dataclass(frozen=True)
class Shipped:
    name: str
    weights: Path
    provenance: dict[str, Any]

    @property
    def options(self) -> dict[str, Any]:
        """The builder options of the shipped network (``{"k": 64}``)."""
        return dict(self.provenance["options"])

    @property
    def held_out(self) -> Path:
        return self.weights.with_name(f"{self.name}-held-out")

    def fits(self, options: dict[str, Any]) -> bool:
        """Whether a network built with ``options`` has this one's shape."""
        return all(options.get(key, value) == value for key, value in self.options.items())

    def load_into(self, model: nn.Module) -> str:
        """Load the weights (stored in float16) into ``model`` in its own precision; the file's sha256."""
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        own = model.state_dict()
        model.load_state_dict({key: value.to(own[key].dtype) for key, value in state.items()}, strict=True)
        return hashlib.sha256(self.weights.read_bytes()).hexdigest()

    def record(self, digest: str) -> dict[str, Any]:
        """What config.json says of these weights."""
        data, held_out = self.provenance["data"], self.provenance["held_out"]
        return {
            "trained": True,
            "kind": "shipped",
            "source": f"shipped with cnnserve ({self.weights.name}): {self.provenance['summary']}",
            "sha256": digest,
            "held_out_top1": held_out["top1"],
            "held_out_top5": held_out["top5"],
            "training_positions": data["training_positions"],
        }


def shipped(name: str, folder: Path = TRAINED) -> Shipped | None:
    """The weights shipped for architecture ``name``, or None."""
    weights, provenance = folder / f"{name}.pt", folder / f"{name}.json"
    if not weights.exists() or not provenance.exists():
        return None
    return Shipped(name, weights, json.loads(provenance.read_text(encoding="utf-8")))
