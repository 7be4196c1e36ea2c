"""Ladder reading for the policy network's planes 44 (ladder capture) and 45 (ladder escape).

A ladder is read by playing it out on copies of the board:

* the *defender*, whose group (the prey) is in atari, either extends at its last liberty or
  captures an attacker group in atari that touches the prey;
* after the defender's move the prey has escaped when it has three or more liberties; with two,
  the *attacker* tries each of them (the one that leaves the defender less room first) and the
  prey has escaped when no atari leads to a capture; with one, the attacker takes it.

The reading gives up after :data:`MAX_DEPTH` plies along a line (that line counts as a failed
ladder) or :data:`MAX_PLAYS` moves played in one reading (the whole ladder counts as failed), so
a position never costs more than a bounded amount of reading.
"""

from __future__ import annotations

from cnnserve.go.board import EMPTY, Board, Group, IllegalMove, opponent
from cnnserve.go.coords import NEIGHBOURS, SIZE
from goreference import rules

MAX_DEPTH = 100  # plies along one line of the ladder; deeper counts as the prey escaping
MAX_PLAYS = 500  # moves played in one reading (a ladder across the board takes about 60); more: failed


class _GiveUp(Exception):
    """The reading spent its :data:`MAX_PLAYS`."""


class _Reader:
    __slots__ = ("attacker", "defender", "plays", "prey")

    def __init__(self, attacker: int, prey: int) -> None:
        self.attacker = attacker
        self.defender = opponent(attacker)
        self.prey = prey  # any stone of the defender's group; it stays on the board while read
        self.plays = 0

    def play(self, board: Board, color: int, p: int) -> Board | None:
        """A copy of ``board`` after the move, or None when the move is illegal."""
        self.plays += 1
        if self.plays > MAX_PLAYS:
            raise _GiveUp
        after = board.copy()
        try:
            rules.play(after, color, p)
        except IllegalMove:
            return None
        return after

    def captured(self, board: Board, depth: int) -> bool:
        """The prey is in atari and the defender moves: does every defence lose the prey?"""
        if depth >= MAX_DEPTH:
            return False
        stones = board.stones
        prey = board.group(self.prey)
        if len(prey.liberties) != 1:
            return len(prey.liberties) == 0
        defences = list(prey.liberties)
        # Capturing an attacker group in atari that touches the prey gains the prey liberties.
        seen: set[int] = set()
        for q in sorted(prey.stones):  # a fixed order: it decides which lines a spent reading has read
            for n in NEIGHBOURS[q]:
                if stones[n] == self.attacker and n not in seen:
                    group = board.group(n)
                    seen |= group.stones
                    if len(group.liberties) == 1:
                        (last,) = group.liberties
                        if last not in defences:
                            defences.append(last)
        for d in defences:
            after = self.play(board, self.defender, d)
            if after is not None and self.escapes(after, depth + 1):
                return False
        return True

    def escapes(self, board: Board, depth: int) -> bool:
        """The defender has moved and the attacker moves: does the prey get away?"""
        prey = board.group(self.prey)
        liberties = prey.liberties
        if len(liberties) >= 3:
            return True
        if len(liberties) == 1:
            (last,) = liberties
            return not rules.is_legal(board, self.attacker, last)  # only a ko keeps the attacker off it
        for a in _attacks(board, prey):
            after = self.play(board, self.attacker, a)
            if after is not None and self.captured(after, depth + 1):
                return False
        return True


def _attacks(board: Board, prey: Group) -> list[int]:
    """The prey's two liberties, the better atari first: the one after which the defender's
    extension (at the other liberty) has the fewest liberties, counting the defender's groups it
    would join; on a tie, the one that drives the prey towards the edge; then the lower point.
    Reading the wrong atari first can spend the whole play budget on a chase that the right one
    ends at once."""
    first, second = sorted(prey.liberties)

    def promise(attack: int) -> tuple[int, int]:
        (extension,) = prey.liberties - {attack}
        row, col = divmod(extension, SIZE)
        return _extension_liberties(board, prey, attack), min(row, col, SIZE - 1 - row, SIZE - 1 - col)

    return sorted((first, second), key=promise)


def _extension_liberties(board: Board, prey: Group, attack: int) -> int:
    """Liberties of the prey once the attacker plays ``attack`` and the defender extends at the
    prey's other liberty (captures aside)."""
    (extension,) = prey.liberties - {attack}
    stones = board.stones
    liberties: set[int] = set()
    for n in NEIGHBOURS[extension]:
        if stones[n] == EMPTY:
            liberties.add(n)
        elif stones[n] == prey.color and n not in prey.stones:
            liberties |= board.group(n).liberties
    liberties -= {attack, extension}
    return len(liberties)


def is_ladder_capture(board: Board, color: int, p: int, prey: int) -> bool:
    """Whether ``color`` playing ``p`` (legal, a liberty of the two-liberty opponent group
    through ``prey``) ataris that group and then captures it in a ladder."""
    reader = _Reader(color, prey)
    try:
        after = reader.play(board, color, p)
        return after is not None and len(after.group(prey).liberties) == 1 and reader.captured(after, 1)
    except _GiveUp:
        return False


def is_ladder_escape(board: Board, color: int, p: int, prey: int) -> bool:
    """Whether ``color`` playing ``p`` (legal: the last liberty of its group in atari through
    ``prey``, or a capture of an opponent group in atari touching it) leaves that group safe
    from a ladder."""
    reader = _Reader(opponent(color), prey)
    try:
        after = reader.play(board, color, p)
        return after is not None and reader.escapes(after, 1)
    except _GiveUp:
        return True
