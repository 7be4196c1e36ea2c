"""The board and the rules the features need: stones, groups and liberties, captures, suicide and
simple ko illegal, passes, and the history of moves (for "turns since" and undo).

Points are indices 0..360 (see :mod:`cnnserve.go.coords`). The board does not know whose turn it
is: GTP lets either colour play, and a position's side to move belongs to
:class:`cnnserve.go.position.Position`.

Legality and playing a move run in C (cnnserve/go/_fastgo.c) on the board's buffers: ``stones``
a bytearray of 361 colours, ``placed`` an int32 array; replaying a game's record costs about a
microsecond a move. The pure-Python rules they replace are the reference in tests/support/goreference/.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import NamedTuple

from cnnserve.go import _fastgo
from cnnserve.go.coords import DIAGONALS, NEIGHBOURS, POINTS, SIZE, to_gtp

EMPTY, BLACK, WHITE = 0, 1, 2
COLOR_NAMES = {BLACK: "black", WHITE: "white"}
# The text board's characters, as GNU Go's showboard draws them.
TEXT = {EMPTY: ".", BLACK: "X", WHITE: "O"}


# _fastgo's reasons for an illegal move (0: legal), as IllegalMove says them.
_REASONS = {
    1: "the point is occupied",
    2: "it retakes the ko at once",
    3: "it is suicide (the stone would have no liberties)",
}


def opponent(color: int) -> int:
    return BLACK + WHITE - color


def parse_color(text: str) -> int:
    """GTP's colours: ``b``, ``black``, ``w``, ``white``, in any case."""
    value = text.strip().lower()
    if value in ("b", "black"):
        return BLACK
    if value in ("w", "white"):
        return WHITE
    raise ValueError(f"{text!r} is not a colour: expected b, black, w or white")


class IllegalMove(ValueError):
    def __init__(self, color: int, p: int, reason: str) -> None:
        super().__init__(f"{COLOR_NAMES[color]} {to_gtp(p)} is illegal: {reason}")
        self.color = color
        self.point = p
        self.reason = reason


class Move(NamedTuple):  # a tuple: made on every move of every replayed record
    color: int
    point: int | None  # None: a pass


@dataclass(frozen=True)
class Group:
    color: int
    stones: frozenset[int]
    liberties: frozenset[int]


class Board:
    """A 19x19 board with its move history. ``play`` enforces the rules; ``place`` sets up stones
    (handicap, SGF's AB/AW/AE, a text board) outside the history."""

    __slots__ = ("ko", "moves", "placed", "prisoners", "stones")

    def __init__(self) -> None:
        self.stones = bytearray(POINTS)  # EMPTY, BLACK or WHITE per point
        # For each stone, the index in ``moves`` of the move that put it there; -1 for a stone
        # that was set up (its age is unknown, so the features treat it as old).
        self.placed = array("i", [-1]) * POINTS
        self.moves: list[Move] = []
        # Simple ko: after a single stone captures a single stone, the opponent may not retake at
        # once. (point, colour that may not play there on the next move), or None.
        self.ko: tuple[int, int] | None = None
        self.prisoners = {BLACK: 0, WHITE: 0}  # stones each colour has captured

    def copy(self) -> Board:
        other = Board.__new__(Board)
        other.stones = bytearray(self.stones)
        other.placed = array("i", self.placed)
        other.moves = self.moves.copy()
        other.ko = self.ko
        other.prisoners = dict(self.prisoners)
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Board) and self.stones == other.stones and self.ko == other.ko

    __hash__ = None  # type: ignore[assignment]  # mutable

    # -- groups and liberties -------------------------------------------------------------

    def group(self, p: int) -> Group:
        """The chain of stones through ``p`` (which must hold a stone) and its liberties."""
        stones = self.stones
        color = stones[p]
        if color == EMPTY:
            raise ValueError(f"{to_gtp(p)} is empty: only stones belong to groups")
        chain = {p}
        liberties: set[int] = set()
        frontier = [p]
        while frontier:
            q = frontier.pop()
            for n in NEIGHBOURS[q]:
                s = stones[n]
                if s == EMPTY:
                    liberties.add(n)
                elif s == color and n not in chain:
                    chain.add(n)
                    frontier.append(n)
        return Group(color, frozenset(chain), frozenset(liberties))

    def groups(self) -> tuple[list[int], list[Group]]:
        """Every group on the board, once: ``(index, groups)`` where ``index[p]`` is the position
        in ``groups`` of the group holding ``p``, or -1 for an empty point."""
        index = [-1] * POINTS
        found: list[Group] = []
        for p in range(POINTS):
            if self.stones[p] != EMPTY and index[p] < 0:
                g = self.group(p)
                for q in g.stones:
                    index[q] = len(found)
                found.append(g)
        return index, found

    def liberties(self, p: int) -> int:
        return len(self.group(p).liberties)

    # -- the rules -----------------------------------------------------------------------

    def illegal_reason(self, color: int, p: int) -> str | None:
        """Why ``color`` may not play at ``p``, or None when it may."""
        if color not in COLOR_NAMES:
            raise ValueError(f"colour {color!r} is neither BLACK nor WHITE")
        code = _fastgo.illegal(self.stones, color, p, self._ko_point(color))
        return _REASONS[code] if code else None

    def _ko_point(self, color: int) -> int:
        """The point the ko forbids ``color`` to play, or -1."""
        return self.ko[0] if self.ko is not None and self.ko[1] == color else -1

    def is_legal(self, color: int, p: int | None) -> bool:
        return p is None or self.illegal_reason(color, p) is None

    def legal_points(self, color: int) -> list[int]:
        ko = self._ko_point(color)
        stones = self.stones
        return [p for p in range(POINTS) if stones[p] == EMPTY and _fastgo.illegal(stones, color, p, ko) == 0]

    def play(self, color: int, p: int | None) -> list[int]:
        """Play a move (None: pass) and return the points of the stones it captured; raise
        :class:`IllegalMove` (and change nothing) when the rules forbid it."""
        if color not in COLOR_NAMES:
            raise ValueError(f"colour {color!r} is neither BLACK nor WHITE")
        if p is None:
            self.moves.append(Move(color, None))
            self.ko = None
            return []
        outcome = _fastgo.play(self.stones, self.placed, color, p, len(self.moves), self._ko_point(color))
        if isinstance(outcome, int):
            raise IllegalMove(color, p, _REASONS[outcome])
        captured, ko = outcome
        self.prisoners[color] += len(captured)
        self.ko = None if ko < 0 else (ko, opponent(color))
        self.moves.append(Move(color, p))
        return captured

    def play_many(self, moves: list[Move]) -> IllegalMove | None:
        """Play ``moves`` in order, as :meth:`play` would one by one but in one call into C;
        stop before the first illegal one and return its :class:`IllegalMove` (the moves before
        it stay played), or None when every move was played."""
        ko_point, ko_color = self.ko if self.ko is not None else (-1, 0)
        played, reason, by_black, by_white, ko_point, ko_color = _fastgo.play_many(
            self.stones, self.placed, moves, len(self.moves), ko_point, ko_color
        )
        self.moves.extend(moves[:played] if played < len(moves) else moves)
        self.prisoners[BLACK] += by_black
        self.prisoners[WHITE] += by_white
        self.ko = None if ko_point < 0 else (ko_point, ko_color)
        if reason:
            color, p = moves[played]
            assert p is not None  # a pass is always legal
            return IllegalMove(color, p, _REASONS[reason])
        return None

    def place(self, color: int, p: int) -> None:
        """Set up a stone (or clear the point with EMPTY) outside the rules and the history, as
        handicap stones, SGF's AB/AW/AE and a text board do. Call :meth:`check_setup` after."""
        self.stones[p] = color
        self.placed[p] = -1
        self.ko = None

    def check_setup(self) -> None:
        """Raise ValueError when a group has no liberties (a position no game can reach)."""
        for g in self.groups()[1]:
            if not g.liberties:
                where = to_gtp(min(g.stones))
                what = "stone" if len(g.stones) == 1 else f"group of {len(g.stones)} stones"
                raise ValueError(f"the {COLOR_NAMES[g.color]} {what} at {where} has no liberties")

    def age(self, p: int) -> int | None:
        """Moves played since the stone at ``p`` was (0: it is the last move), or None when it was
        set up rather than played."""
        placed = self.placed[p]
        return None if placed < 0 else len(self.moves) - 1 - placed

    def is_eye(self, color: int, p: int) -> bool:
        """Whether ``p`` is an empty point that is ``color``'s own eye: every neighbour is its
        stone, and the opponent holds no diagonal point on the edge (one of up to four in the
        middle), so the eye cannot be made false. Filling such a point only wastes an eye."""
        stones = self.stones
        if stones[p] != EMPTY or any(stones[n] != color for n in NEIGHBOURS[p]):
            return False
        enemy = opponent(color)
        diagonals = DIAGONALS[p]
        enemies = sum(1 for d in diagonals if stones[d] == enemy)
        return enemies == 0 if len(diagonals) < 4 else enemies <= 1

    # -- text ----------------------------------------------------------------------------

    def to_text(self) -> str:
        """19 lines of ``.``, ``X`` (black) and ``O`` (white), the top line first."""
        rows = ("".join(TEXT[s] for s in self.stones[r * SIZE : (r + 1) * SIZE]) for r in range(SIZE))
        return "\n".join(rows) + "\n"
