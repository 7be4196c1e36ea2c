"""Game records for training: every SGF file under the folders given, read into its setup and
its moves, and split into training and held-out games by game.

A record that cannot be used is skipped with its reason counted (a board other than 19x19, an
illegal move, a parse error, setup stones after the first node), so that one bad file in a
user's collection of thousands does not stop training. The split hashes a game's moves, not its
file name, so that a game stored twice (common in downloaded archives) lands on one side only,
and adding games never moves an old game from one side to the other.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cnnserve.go import position, sgf
from cnnserve.go.board import Board, Move
from cnnserve.go.coords import to_sgf


@dataclass(frozen=True)
class Game:
    name: str  # the file, as found under the folder given
    start: Board  # the setup (handicap, AB/AW) before the first move; shared, never played on
    moves: tuple[Move, ...]
    key: str  # a hash of the setup and the moves: equal games have equal keys

    def split_value(self) -> float:
        """A number in [0, 1) fixed by the game alone: held out when below the fraction."""
        return int(self.key[:13], 16) / 16**13


@dataclass
class Collection:
    games: list[Game] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> files

    @property
    def positions(self) -> int:
        """Moves on a point (passes are not a policy target)."""
        return sum(1 for game in self.games for move in game.moves if move.point is not None)

    def split(self, held_out_fraction: float) -> tuple[list[Game], list[Game]]:
        """``(training, held_out)`` by game (see :meth:`Game.split_value`), each in the order read."""
        held_out = [g for g in self.games if g.split_value() < held_out_fraction]
        training = [g for g in self.games if g.split_value() >= held_out_fraction]
        return training, held_out


class RecordSkipped(ValueError):
    """A record that cannot be trained on; the message is the reason."""


def read_game(text: str, name: str) -> Game:
    try:
        record = sgf.parse(text)
    except sgf.SgfError as exc:
        raise RecordSkipped(f"does not parse ({exc})") from None
    if any(prop in node for node in record.nodes[1:] for prop in ("AB", "AW", "AE")):
        raise RecordSkipped("setup stones after the first node")
    try:
        start = position.from_sgf(text, 0).board
        moves = tuple(position.from_sgf(text).board.moves)
    except position.PositionError as exc:
        raise RecordSkipped(str(exc).partition(":")[2].strip() or str(exc)) from None
    digest = hashlib.sha256(bytes(start.stones))
    digest.update("".join(f"{m.color}{to_sgf(m.point) or '--'}" for m in moves).encode())
    return Game(name, start, moves, digest.hexdigest())


def _reason_kind(reason: str) -> str:
    """Counted reasons without their file-specific details (which move, which value)."""
    for kind in ("board size", "does not parse", "is illegal", "setup stones", "handicap", "moves; at most"):
        if kind in reason:
            return kind
    return reason


def sgf_files(folders: Sequence[Path]) -> list[tuple[Path, str]]:
    """Every ``*.sgf`` under each folder (recursively), sorted, with its name for reports."""
    found: list[tuple[Path, str]] = []
    for folder in folders:
        if folder.is_file():
            found.append((folder, folder.name))
            continue
        for path in sorted(folder.rglob("*.sgf")):
            found.append((path, f"{folder.name}/{path.relative_to(folder)}"))
    return found


def read(folders: Iterable[Path]) -> Collection:
    collection = Collection()
    for path, name in sgf_files(list(folders)):
        try:
            collection.games.append(read_game(path.read_text(encoding="utf-8", errors="replace"), name))
        except RecordSkipped as exc:
            collection.skipped[_reason_kind(str(exc))] += 1
    return collection
