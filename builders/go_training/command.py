"""``cnnserve go-train DATA... --out DIR``: train the policy network on the SGF games under DATA.

Run it again with the same ``--out`` to go on from the checkpoint (more ``--positions``, or a
data folder that has grown since). Each evaluation adds a line to ``history.jsonl`` and redraws
``history.png`` (when matplotlib is installed: ``pip install cnnserve[compare]``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import fields
from pathlib import Path

import torch

from cnnserve.builders.go_training import records
from cnnserve.builders.go_training.batches import Positions
from cnnserve.builders.go_training.chart import CHART
from cnnserve.builders.go_training.loop import Settings, Trainer, TrainingError, read_history
from cnnserve.errors import CommandError

_HELP = {
    "k": "filters per layer (AlphaGo: 192); fixed for a run",
    "batch": "positions per step",
    "lr": "Adam's learning rate; may change on resume",
    "weight_decay": "AdamW's weight decay",
    "positions": "train until this many positions have been seen, all runs of this --out together",
    "eval_every": "positions between held-out evaluations and checkpoints",
    "eval_positions": "held-out positions evaluated each time (the same ones throughout)",
    "held_out_fraction": "share of the games held out, chosen by a hash of each game's moves; fixed for a run",
    "seed": "the initial weights, the order of the positions and their symmetries; fixed for a run",
    "device": "cpu, or cuda (a GPU)",
    "precision": "fp32, or bf16: the forward pass in bfloat16 (about twice as fast on CPUs with AVX-512 BF16 "
    "or AMX, and on recent GPUs); the weights stay float32; may change on resume",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="+", type=Path, help="folders of SGF games (searched recursively) or files")
    parser.add_argument("--out", type=Path, required=True, help="the run's folder: checkpoint, history, chart")
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(
            flag, type=type(f.default), default=f.default, help=f"{_HELP[f.name]} (default {f.default})"
        )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")


def main(args: argparse.Namespace) -> int:
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    _check(settings)
    if args.threads:
        torch.set_num_threads(args.threads)
    missing = [str(p) for p in args.data if not p.exists()]
    if missing:
        raise CommandError(f"data: {', '.join(missing)} does not exist")
    collection = records.read(args.data)
    if not collection.games:
        raise CommandError(f"data: no usable SGF games under {', '.join(map(str, args.data))}")
    training, held_out = collection.split(settings.held_out_fraction)
    skipped = "".join(f"; skipped {n} ({reason})" for reason, n in collection.skipped.most_common())
    print(f"{len(collection.games)} games, {collection.positions:,} positions: {len(training)} games to train on, "
          f"{len(held_out)} held out{skipped}", file=sys.stderr)  # fmt: skip
    # SIGTERM (kill, a service manager, `timeout`) stops a run as Ctrl-C does: saved first. A run
    # started in the background of a script has SIGINT ignored, so SIGTERM is the way to stop it.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        trainer = Trainer(settings, Positions(training), Positions(held_out), args.out)
        if trainer.resume():
            print(f"resuming {trainer.checkpoint_path} at {trainer.state.positions:,} positions", file=sys.stderr)
        trainer.run()
    except TrainingError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    history = read_history(args.out)
    drew = (args.out / CHART).exists()
    last = history[-1] if history else None
    if last:
        print(f"held-out top-1 {last['held_out_top1']:.1%}, top-5 {last['held_out_top5']:.1%} "
              f"after {last['positions']:,} positions ({last['seconds'] / 3600:.2f} h)")  # fmt: skip
    print(f"checkpoint: {trainer.checkpoint_path}" + (f"; chart: {args.out / CHART}" if drew else ""))
    print(f"serve it: cnnserve export alphago_policy --option k={settings.k} --checkpoint {trainer.checkpoint_path}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _check(settings: Settings) -> None:
    problems = [
        f"--{name.replace('_', '-')} {value}: {expected}"
        for name, value, ok, expected in (
            ("k", settings.k, settings.k >= 1, "expected at least 1"),
            ("batch", settings.batch, settings.batch >= 1, "expected at least 1"),
            ("lr", settings.lr, settings.lr > 0, "expected a positive rate"),
            ("positions", settings.positions, settings.positions >= 1, "expected at least 1"),
            ("eval_every", settings.eval_every, settings.eval_every >= 1, "expected at least 1"),
            ("eval_positions", settings.eval_positions, settings.eval_positions >= 1, "expected at least 1"),
            ("held_out_fraction", settings.held_out_fraction, 0 < settings.held_out_fraction < 1,
             "expected a fraction between 0 and 1"),
            ("device", settings.device, settings.device.split(":")[0] in ("cpu", "cuda"), "expected cpu or cuda"),
            ("precision", settings.precision, settings.precision in ("fp32", "bf16"), "expected fp32 or bf16"),
        )
        if not ok
    ]  # fmt: skip
    if problems:
        raise CommandError("; ".join(problems))
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {settings.device}: this torch sees no CUDA device")
