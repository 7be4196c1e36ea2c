"""The 48 planes in pure Python: the reference for :func:`cnnserve.go.features.planes`.

Groups are found once; what a move would do (capture, liberties, self-atari, legality) is worked
out from its neighbouring groups' stones and liberties without playing it. Only the ladder
planes play moves out, and only at the few points where a ladder can start
(see :mod:`goreference.ladders`).
"""

from __future__ import annotations

import numpy as np

from cnnserve.go.board import BLACK, EMPTY, WHITE, Board, Group, opponent
from cnnserve.go.coords import NEIGHBOURS, POINTS, SIZE
from cnnserve.go.features import FEATURES, PLANES
from goreference.ladders import is_ladder_capture, is_ladder_escape

_START = {f.name: f.start for f in FEATURES}
_PLAYER = _START["stone_colour"]  # the player's stones; +1 the opponent's, +2 empty points
_ONES = _START["ones"]
_TURNS = _START["turns_since"]
_LIBERTIES = _START["liberties"]
_CAPTURE = _START["capture_size"]
_SELF_ATARI = _START["self_atari_size"]
_LIBERTIES_AFTER = _START["liberties_after_move"]
_LADDER_CAPTURE = _START["ladder_capture"]
_LADDER_ESCAPE = _START["ladder_escape"]
_SENSIBLE = _START["sensibleness"]


def _moves(board: Board, color: int, index: list[int], groups: list[Group]) -> dict[int, tuple[int, int, int]]:
    """Every legal move of ``color``, as ``point -> (stones captured, liberties of the new stone's
    group, stones in that group)`` after the move, worked out from the neighbouring groups.

    The new group is the stone and the player's groups next to it; its liberties are their
    liberties, the empty neighbours, and the captured stones (opponent groups next to it whose
    only liberty is the point) that touch the new group, less the point itself. No liberties
    left means suicide; the ko point is illegal for the colour the ko forbids."""
    stones = board.stones
    ko_point = board.ko[0] if board.ko is not None and board.ko[1] == color else -1
    moves: dict[int, tuple[int, int, int]] = {}
    for p in range(POINTS):
        if stones[p] != EMPTY or p == ko_point:
            continue
        empties: list[int] = []
        own: list[int] = []  # indices of the player's groups next to p
        taken: list[int] = []  # indices of the opponent groups p captures
        for n in NEIGHBOURS[p]:
            s = stones[n]
            if s == EMPTY:
                empties.append(n)
            elif s == color:
                g = index[n]
                if g not in own:
                    own.append(g)
            else:
                g = index[n]
                if g not in taken and len(groups[g].liberties) == 1:
                    taken.append(g)
        if not own and not taken:
            if empties:  # a lone stone: its liberties are its empty neighbours
                moves[p] = (0, len(empties), 1)
            continue
        liberties = set(empties)
        size = 1
        for g in own:
            liberties |= groups[g].liberties
            size += len(groups[g].stones)
        captured = 0
        for g in taken:
            removed = groups[g].stones
            captured += len(removed)
            for q in removed:
                # A captured stone is a liberty when it touches p or one of the joined groups.
                if any(n == p or index[n] in own for n in NEIGHBOURS[q]):
                    liberties.add(q)
        liberties.discard(p)
        if liberties:
            moves[p] = (captured, len(liberties), size)
    return moves


def sensible(board: Board, color: int) -> list[bool]:
    """Per point: ``color`` may play there and it does not fill one of its own eyes."""
    index, groups = board.groups()
    moves = _moves(board, color, index, groups)
    return [p in moves and not board.is_eye(color, p) for p in range(POINTS)]


def planes(board: Board, to_move: int) -> np.ndarray:
    """The 48 planes for ``to_move`` (BLACK or WHITE) to play on ``board``: float32, shape
    ``(48, 19, 19)``, C-contiguous, every value 0 or 1. See :data:`FEATURES`."""
    if to_move not in (BLACK, WHITE):
        raise ValueError(f"to_move {to_move!r} is neither BLACK nor WHITE")
    enemy = opponent(to_move)
    stones = board.stones
    index, groups = board.groups()
    moves = _moves(board, to_move, index, groups)
    hot: list[int] = []  # flat indices plane * 361 + point of the 1s

    # Planes 0-2, stone colour: the player's stones, the opponent's stones, empty points.
    colour_plane = {to_move: _PLAYER, enemy: _PLAYER + 1, EMPTY: _PLAYER + 2}
    hot.extend(colour_plane[s] * POINTS + p for p, s in enumerate(stones))

    for group in groups:
        # Planes 12-19, liberties: a stone of either colour whose group has k liberties lights
        # plane 12 + min(k, 8) - 1.
        offset = (_LIBERTIES + min(len(group.liberties), 8) - 1) * POINTS
        hot.extend(offset + p for p in group.stones)
        for p in group.stones:
            # Planes 4-11, turns since: the stone of the last move lights plane 4, one played
            # k moves ago plane 4 + min(k, 7); set-up stones (no known age) count as old, 11.
            age = board.age(p)
            hot.append((_TURNS + (7 if age is None else min(age, 7))) * POINTS + p)

    for p, (captured, liberties, size) in moves.items():
        # Planes 20-27, capture size: a legal move capturing k opponent stones lights plane
        # 20 + min(k, 7); plane 20 holds the legal moves that capture nothing.
        hot.append((_CAPTURE + min(captured, 7)) * POINTS + p)
        # Planes 28-35, self-atari size: a legal move after which its group of k stones has
        # one liberty lights plane 28 + min(k, 8) - 1.
        if liberties == 1:
            hot.append((_SELF_ATARI + min(size, 8) - 1) * POINTS + p)
        # Planes 36-43, liberties after move: a legal move after which its group has k
        # liberties lights plane 36 + min(k, 8) - 1.
        hot.append((_LIBERTIES_AFTER + min(liberties, 8) - 1) * POINTS + p)
        # Plane 46, sensibleness: legal, and not filling one of the player's own eyes.
        if not board.is_eye(to_move, p):
            hot.append(_SENSIBLE * POINTS + p)

    # Plane 44, ladder capture: a legal move on a liberty of a two-liberty opponent group,
    # after which the group (now in atari) cannot get out of the ladder.
    captures: set[int] = set()
    for group in groups:
        if group.color == enemy and len(group.liberties) == 2:
            prey = next(iter(group.stones))
            for p in group.liberties:
                if p in moves and p not in captures and is_ladder_capture(board, to_move, p, prey):
                    captures.add(p)
    hot.extend(_LADDER_CAPTURE * POINTS + p for p in captures)

    # Plane 45, ladder escape: a legal move that leaves the player's group in atari safe from
    # a ladder: extending at its last liberty, or capturing an opponent group in atari that
    # touches it.
    escapes: set[int] = set()
    for group in groups:
        if group.color == to_move and len(group.liberties) == 1:
            prey = next(iter(group.stones))
            candidates = set(group.liberties)
            for q in group.stones:
                for n in NEIGHBOURS[q]:
                    if stones[n] == enemy and len(groups[index[n]].liberties) == 1:
                        candidates |= groups[index[n]].liberties
            for p in candidates:
                if p in moves and p not in escapes and is_ladder_escape(board, to_move, p, prey):
                    escapes.add(p)
    hot.extend(_LADDER_ESCAPE * POINTS + p for p in escapes)

    flat = np.zeros(PLANES * POINTS, dtype=np.float32)
    flat[_ONES * POINTS : (_ONES + 1) * POINTS] = 1.0  # plane 3, ones: constant 1
    flat[np.array(hot, dtype=np.intp)] = 1.0
    # Plane 47, zeros: constant 0, left as allocated.
    return flat.reshape(PLANES, SIZE, SIZE)
