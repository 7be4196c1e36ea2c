"""The rules in pure Python, on a :class:`cnnserve.go.board.Board`'s data: legality and playing a
move (captures, suicide, simple ko), as cnnserve's Board did before the C code took them over."""

from __future__ import annotations

from cnnserve.go.board import COLOR_NAMES, EMPTY, Board, IllegalMove, Move, opponent
from cnnserve.go.coords import NEIGHBOURS


def illegal_reason(board: Board, color: int, p: int) -> str | None:
    """Why ``color`` may not play at ``p``, or None when it may (the messages of Board's)."""
    stones = board.stones
    if stones[p] != EMPTY:
        return "the point is occupied"
    if board.ko == (p, color):
        return "it retakes the ko at once"
    enemy = opponent(color)
    for n in NEIGHBOURS[p]:
        s = stones[n]
        if s == EMPTY:
            return None
        liberties = board.group(n).liberties
        if s == color and len(liberties) > 1:
            return None  # joins a group that keeps a liberty besides p
        if s == enemy and len(liberties) == 1:
            return None  # captures, so the new stone gains a liberty
    return "it is suicide (the stone would have no liberties)"


def is_legal(board: Board, color: int, p: int | None) -> bool:
    return p is None or illegal_reason(board, color, p) is None


def play(board: Board, color: int, p: int | None) -> list[int]:
    """Play a move on ``board`` in place; the captured points; IllegalMove when forbidden."""
    if color not in COLOR_NAMES:
        raise ValueError(f"colour {color!r} is neither BLACK nor WHITE")
    if p is None:
        board.moves.append(Move(color, None))
        board.ko = None
        return []
    reason = illegal_reason(board, color, p)
    if reason is not None:
        raise IllegalMove(color, p, reason)
    stones = board.stones
    stones[p] = color
    board.placed[p] = len(board.moves)
    enemy = opponent(color)
    captured: list[int] = []
    for n in NEIGHBOURS[p]:
        if stones[n] == enemy:
            g = board.group(n)
            if not g.liberties:
                for q in g.stones:
                    stones[q] = EMPTY
                    board.placed[q] = -1
                captured.extend(g.stones)
    board.prisoners[color] += len(captured)
    board.ko = None
    if len(captured) == 1:
        own = board.group(p)
        if len(own.stones) == 1 and own.liberties == {captured[0]}:
            board.ko = (captured[0], enemy)
    board.moves.append(Move(color, p))
    return captured
