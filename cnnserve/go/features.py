"""The 48 input planes of AlphaGo's policy network (Silver et al. 2016, Extended Data Table 2),
always from the point of view of the side to move ("player"; the other side is "opponent").

Planes are 19x19 with row 0 the top line, as :mod:`cnnserve.go.coords` numbers points. All
values are 0 or 1; a feature with ``count`` planes one-hot encodes a number per point, and a
point where the feature does not apply (an empty point for the stone features, an illegal move
for the move features) is 0 in all of them.

The planes are computed in C (cnnserve/go/_fastgo.c) with the GIL released, in tens of
microseconds a position, ladders included: chains and their liberties are found once as bit sets;
what a move would do (capture, liberties, self-atari, legality) is worked out from its
neighbouring chains without playing it; only the ladder planes play moves out, on one board with
an undo stack, and only at the few points where a ladder can start. The pure-Python reference in
tests/support/goreference/ defines the same planes plainly and the tests compare the two bit for bit.

Ladder reading (planes 44 and 45): the *defender*, whose group (the prey) is in atari, either
extends at its last liberty or captures an attacker group in atari that touches the prey (in
the order of the prey's stones, then up, down, left, right); after the defender's move the prey
has escaped with three or more liberties; with two, the attacker tries each (first the one that
leaves the extension fewer liberties, then the one that drives the prey to the edge, then the
lower point) and the prey has escaped when no atari captures it; with one, the attacker takes it
unless a ko forbids. A line deeper than 100 plies counts as the prey escaping; a reading that
plays more than 500 moves gives up: no ladder capture, and a ladder escape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnserve.go import _fastgo
from cnnserve.go.board import BLACK, WHITE, Board
from cnnserve.go.coords import SIZE

PLANES = 48


@dataclass(frozen=True)
class Feature:
    """One row of Extended Data Table 2: planes ``start`` to ``start + count - 1``."""

    name: str
    start: int
    count: int
    meaning: str


FEATURES: tuple[Feature, ...] = (
    Feature("stone_colour", 0, 3, "player stone / opponent stone / empty point"),
    Feature("ones", 3, 1, "a constant plane of 1s"),
    Feature("turns_since", 4, 8, "stone played k moves ago in plane k (0 = the last move); 7 = 7 or more, or set up"),
    Feature("liberties", 12, 8, "stone whose group has k liberties in plane k - 1; 8 = 8 or more"),
    Feature("capture_size", 20, 8, "legal move capturing k opponent stones in plane k; 7 = 7 or more"),
    Feature("self_atari_size", 28, 8, "legal move leaving its own group of k stones in atari in plane k - 1; 8 = 8+"),
    Feature("liberties_after_move", 36, 8, "legal move whose group then has k liberties in plane k - 1; 8 = 8+"),
    Feature("ladder_capture", 44, 1, "legal move that ataris a two-liberty opponent group which a ladder captures"),
    Feature("ladder_escape", 45, 1, "legal move that saves the player's group in atari from a ladder"),
    Feature("sensibleness", 46, 1, "legal move that does not fill one of the player's own eyes"),
    Feature("zeros", 47, 1, "a constant plane of 0s"),
)


def planes(board: Board, to_move: int, out: np.ndarray | None = None) -> np.ndarray:
    """The 48 planes for ``to_move`` (BLACK or WHITE) to play on ``board``: float32, shape
    ``(48, 19, 19)``, C-contiguous, every value 0 or 1. See :data:`FEATURES`.

    ``out``, when given, is a C-contiguous float32 array of that shape (a row of a batch, say)
    written in place and returned. The work runs without the GIL."""
    if to_move not in (BLACK, WHITE):
        raise ValueError(f"to_move {to_move!r} is neither BLACK nor WHITE")
    if out is None:
        out = np.empty((PLANES, SIZE, SIZE), dtype=np.float32)
    elif out.shape != (PLANES, SIZE, SIZE) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out: {out.dtype} {out.shape}; expected C-contiguous float32 ({PLANES}, {SIZE}, {SIZE})")
    ko_point, ko_color = board.ko if board.ko is not None else (-1, 0)
    _fastgo.planes(board.stones, board.placed, len(board.moves), ko_point, ko_color, to_move, out)
    return out
