"""Whose area each point is, as far as the stones alone say, and when a game has nothing left
to play: what a pure policy player needs to pass at the right time.

An empty region (points joined through empty neighbours) whose bordering stones are all one
colour is that colour's area; one that touches both colours (dame, or a region still being
fought over), or none, or one too large to be settled (the opening) is nobody's. Under area
scoring a move in one's own area gains nothing while no opponent stone touches it, so a player
with nothing else to do passes.
Dead stones are not judged: a region around an opponent's dead stones touches both colours and
stays open, so the player may still capture them.
"""

from __future__ import annotations

from cnnserve.go.board import BLACK, EMPTY, WHITE, Board
from cnnserve.go.coords import NEIGHBOURS, POINTS

# A region larger than this is open ground even when one colour surrounds it: the other could
# still make a living group inside (finished games between engines leave territories smaller).
OPEN_REGION = 60


def owners(board: Board) -> list[int]:
    """For each point: the colour of its stone; for an empty point, the colour of its region's
    area (BLACK or WHITE), or EMPTY when the region borders both colours or neither, or is
    larger than :data:`OPEN_REGION` points."""
    stones = board.stones
    owner = [EMPTY] * POINTS
    seen = bytearray(POINTS)
    for start in range(POINTS):
        if stones[start] != EMPTY:
            owner[start] = stones[start]
            continue
        if seen[start]:
            continue
        region, frontier, borders = [start], [start], 0
        seen[start] = 1
        while frontier:
            p = frontier.pop()
            for n in NEIGHBOURS[p]:
                s = stones[n]
                if s == EMPTY:
                    if not seen[n]:
                        seen[n] = 1
                        region.append(n)
                        frontier.append(n)
                else:
                    borders |= s  # BLACK = 1, WHITE = 2: 3 when both
        colour = borders if borders in (BLACK, WHITE) and len(region) <= OPEN_REGION else EMPTY
        for p in region:
            owner[p] = colour
    return owner


def in_atari(board: Board) -> bool:
    """Whether any chain on the board has a single liberty."""
    counted: set[int] = set()
    for p in range(POINTS):
        if board.stones[p] != EMPTY and p not in counted:
            group = board.group(p)
            counted |= group.stones
            if len(group.liberties) == 1:
                return True
    return False


def settled(board: Board, owner: list[int] | None = None) -> bool:
    """Every empty point is one colour's area, at least one stone stands, and no chain is in
    atari: nothing is left to fight over. ``owner``: :func:`owners` of the board, when known."""
    owner = owners(board) if owner is None else owner
    return any(board.stones) and all(o != EMPTY for o in owner) and not in_atari(board)
