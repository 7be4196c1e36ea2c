"""Training ``alphago_policy`` on positions: the steps, the held-out evaluation, the checkpoint.

The checkpoint (``checkpoint.pt`` in the output folder) holds the weights under ``state_dict``,
so ``cnnserve export alphago_policy --option k=K --checkpoint FILE`` takes it as it is, and with
them the optimiser's state and where in the data training stood, so that a run stopped (Ctrl-C,
the end of a session) goes on from there. Each evaluation appends a line to ``history.jsonl`` and
redraws the chart.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnnserve.builders.alphago import PolicyNetwork, alphago_policy
from cnnserve.builders.go_training import symmetry
from cnnserve.builders.go_training.batches import Positions
from cnnserve.builders.go_training.chart import CHART, draw_chart

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.jsonl"


@dataclass(frozen=True)
class Settings:
    k: int = 128
    batch: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    positions: int = 1_000_000  # train until this many positions have been seen, all runs together
    eval_every: int = 20_000  # positions between evaluations (and checkpoints)
    eval_positions: int = 2_000  # held-out positions evaluated: the same ones while the data grows
    held_out_fraction: float = 0.05
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # or bf16: the forward pass autocast to bfloat16; weights and optimiser stay float32


# Settings that must not change when a run is resumed: the network and the split it was trained on.
_FIXED = ("k", "held_out_fraction", "seed")


class TrainingError(ValueError):
    pass


def read_history(out: Path) -> list[dict[str, Any]]:
    """The lines of ``out``'s history, oldest first."""
    path = out / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def logits(model: PolicyNetwork, x: Tensor) -> Tensor:
    """The network's scores before its softmax (the loss takes them, for stability)."""
    out: Tensor = model.flatten(model.features(x))
    return out


def fresh_network(k: int, seed: int) -> PolicyNetwork:
    """He initialisation: the builder's default init shrinks the signal through 13 layers of ReLU."""
    torch.manual_seed(seed)
    model = alphago_policy(k=k)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@dataclass
class Scores:
    loss: float
    top1: float
    top5: float

    @classmethod
    def of(cls, sums: np.ndarray) -> Scores:
        """From summed loss, top-1 hits, top-5 hits and count."""
        n = max(1.0, float(sums[3]))
        return cls(float(sums[0]) / n, float(sums[1]) / n, float(sums[2]) / n)


def evaluate(model: PolicyNetwork, positions: Positions, indices: np.ndarray, device: str, batch: int = 256) -> Scores:
    """Loss and accuracy on ``positions[indices]`` as they are (symmetry 0), without training."""
    model.eval()
    total = np.zeros(4)
    with torch.no_grad():
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            x, y = positions.batch(chunk, [0] * len(chunk))
            total += _score_sums(logits(model, _tensor(x, device)), torch.from_numpy(y).to(device))
    return Scores.of(total)


def _tensor(x: np.ndarray, device: str) -> Tensor:
    return torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)


def _score_sums(scores: Tensor, targets: Tensor) -> np.ndarray:
    """Summed loss, top-1 hits, top-5 hits and the count of one batch."""
    loss = nn.functional.cross_entropy(scores, targets, reduction="sum")
    top5 = scores.topk(5, dim=1).indices
    hits1 = (top5[:, 0] == targets).sum()
    hits5 = (top5 == targets[:, None]).any(dim=1).sum()
    return np.array([float(loss), float(hits1), float(hits5), len(targets)])


def eval_indices(positions: Positions, count: int) -> np.ndarray:
    """The first ``count`` held-out positions, whole games in the order given: games added to the
    data later (self-play names them by seed) come after them, so the set stays the same while
    the data grows, and the curve compares like with like."""
    return np.arange(min(count, len(positions)))


@dataclass
class State:
    """Where training stands: saved with the weights, read back on resume."""

    positions: int = 0  # seen, all runs together
    steps: int = 0
    seconds: float = 0.0  # spent training and evaluating, all runs together
    epoch: int = 0
    offset: int = 0  # positions of this epoch's order already taken
    data: str = ""  # what the epoch's order was drawn over (games and positions)


class Trainer:
    def __init__(self, settings: Settings, training: Positions, held_out: Positions, out: Path) -> None:
        if len(training) == 0:
            raise TrainingError("no training positions: every game was held out or skipped")
        self.settings = settings
        self.training = training
        self.held_out = held_out
        self.out = out
        self.device = settings.device
        # Channels-last runs the convolutions about twice as fast on the CPU.
        self.model = fresh_network(settings.k, settings.seed).to(self.device)
        self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
        # Adam: SGD at a rate that trains in a few epochs diverged without batch norm to steady it.
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.state = State(data=f"{len(training.games)} games, {len(training)} positions")
        self.eval_at = eval_indices(held_out, settings.eval_positions)
        self.rng = np.random.default_rng(settings.seed)
        self.resumed = False
        out.mkdir(parents=True, exist_ok=True)

    # -- checkpoints -----------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def save(self) -> None:
        payload = {
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimiser.state_dict(),
            "state": asdict(self.state),
            "settings": asdict(self.settings),
        }
        partial = self.checkpoint_path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(payload, partial)
        partial.replace(self.checkpoint_path)

    def resume(self) -> bool:
        """Load the folder's checkpoint, if there is one; whether there was."""
        if not self.checkpoint_path.exists():
            return False
        saved = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        changed = [f"{name} {saved['settings'][name]} -> {getattr(self.settings, name)}"
                   for name in _FIXED if saved["settings"].get(name) != getattr(self.settings, name)]  # fmt: skip
        if changed:
            raise TrainingError(
                f"{self.checkpoint_path} was trained with other settings ({', '.join(changed)}): "
                "use another --out folder, or the same settings"
            )
        self.model.load_state_dict(saved["state_dict"])
        self.optimiser.load_state_dict(saved["optimizer"])
        for group in self.optimiser.param_groups:  # the learning rate may be changed on resume
            group["lr"] = self.settings.lr
        state = State(**saved["state"])
        if state.data != self.state.data:  # the folder grew: a new epoch over all of it
            state.epoch, state.offset, state.data = state.epoch + 1, 0, self.state.data
        self.state = state
        self.resumed = True
        return True

    def record(self, scores: Scores, train: Scores) -> dict[str, Any]:
        line = {
            "positions": self.state.positions,
            "steps": self.state.steps,
            "seconds": round(self.state.seconds, 1),
            "train_loss": round(train.loss, 4),
            "train_top1": round(train.top1, 4),
            "held_out_loss": round(scores.loss, 4),
            "held_out_top1": round(scores.top1, 4),
            "held_out_top5": round(scores.top5, 4),
            "held_out_positions": len(self.eval_at),
        }
        with (self.out / HISTORY).open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        return line

    # -- training --------------------------------------------------------------------------

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.settings.seed, self.state.epoch]).permutation(len(self.training))

    def next_indices(self) -> np.ndarray:
        """The next batch of the epoch's order; a batch that runs past the end goes on into the
        next epoch's, so every batch is full."""
        taken: list[np.ndarray] = []
        wanted = self.settings.batch
        while wanted > 0:
            order = self._order()
            if self.state.offset >= len(order):
                self.state.epoch, self.state.offset = self.state.epoch + 1, 0
                continue
            chunk = order[self.state.offset : self.state.offset + wanted]
            self.state.offset += len(chunk)
            wanted -= len(chunk)
            taken.append(chunk)
        return np.concatenate(taken)

    def step(self) -> np.ndarray:
        """One optimiser step on the next batch; the batch's loss, top-1 and top-5 sums."""
        indices = self.next_indices()
        x, y = self.training.batch(indices, self.rng.integers(0, symmetry.COUNT, size=len(indices)))
        self.model.train()
        kind = self.device.split(":")[0]
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=self.settings.precision == "bf16"):
            scores = logits(self.model, _tensor(x, self.device)).float()
        targets = torch.from_numpy(y).to(self.device)
        loss = nn.functional.cross_entropy(scores, targets)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {float(loss)} at step {self.state.steps}: lower --lr and start again, "
                f"or resume from the last checkpoint ({self.checkpoint_path})"
            )
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.state.positions += len(indices)
        self.state.steps += 1
        with torch.no_grad():
            return _score_sums(scores.detach(), targets)

    def run(self, progress: bool = True) -> list[dict[str, Any]]:
        """Train to ``settings.positions``, evaluating and saving every ``eval_every``; the lines
        written to the history. Ctrl-C saves where it stood first."""
        lines: list[dict[str, Any]] = []
        window = _Window()
        started = time.monotonic()
        start_seconds, start_positions = self.state.seconds, self.state.positions
        try:
            while self.state.positions < self.settings.positions:
                window.add(self.step())
                self.state.seconds = start_seconds + time.monotonic() - started
                due = (
                    self.state.positions // self.settings.eval_every
                    != (self.state.positions - self.settings.batch) // self.settings.eval_every
                )
                if due or self.state.positions >= self.settings.positions:
                    lines.append(self.checkpoint(window.scores()))
                if progress:
                    rate = (self.state.positions - start_positions) / max(1e-9, time.monotonic() - started)
                    _draw(self.state.positions, self.settings.positions, window.scores(), rate, lines)
        except KeyboardInterrupt:
            self.save()
            if progress:
                print(
                    f"\nstopped at {self.state.positions:,} positions; saved to {self.checkpoint_path}", file=sys.stderr
                )
            raise
        if progress:
            print(file=sys.stderr)
        return lines

    def checkpoint(self, train: Scores) -> dict[str, Any]:
        scores = evaluate(self.model, self.held_out, self.eval_at, self.device)
        line = self.record(scores, train)
        self.save()
        draw_chart(read_history(self.out), self.out / CHART)
        return line


class _Window:
    """Training loss and accuracy over the most recent positions (for the progress bar)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.batches: list[np.ndarray] = []

    def add(self, sums: np.ndarray) -> None:
        self.batches.append(sums)
        while len(self.batches) > 1 and sum(b[3] for b in self.batches[1:]) >= self.size:
            self.batches.pop(0)

    def scores(self) -> Scores:
        return Scores.of(np.sum(self.batches, axis=0) if self.batches else np.zeros(4))


def _draw(done: int, total: int, train: Scores, rate: float, lines: list[dict[str, Any]]) -> None:
    bar = "#" * int(30 * min(done, total) / total)
    left = max(0, total - done) / rate if rate > 0 else math.inf
    eta = f"{int(left) // 3600}:{int(left) % 3600 // 60:02}:{int(left) % 60:02}" if math.isfinite(left) else "--"
    held = f"  held-out top-1 {lines[-1]['held_out_top1']:.1%}" if lines else ""
    print(
        f"\r[{bar:<30}] {done:,}/{total:,} positions  loss {train.loss:.3f}  top-1 {train.top1:.1%}"
        f"  top-5 {train.top5:.1%}  {rate:,.0f} pos/s  eta {eta}{held}   ",
        end="",
        file=sys.stderr,
        flush=True,
    )
