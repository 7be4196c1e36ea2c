"""A position the policy network can be asked about: a board with its history and the side to move,
read from a text board or from an SGF record at a move number.

Every error is a :class:`PositionError` whose message starts with the request field at fault
(``board``, ``sgf``, ``move_number``, ``to_move``), so the server can pass it on as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnserve.go import sgf
from cnnserve.go.board import BLACK, COLOR_NAMES, EMPTY, TEXT, WHITE, Board, Move
from cnnserve.go.coords import SGF_POINTS, SIZE, CoordinateError, fixed_handicap, point, to_gtp, to_sgf
from cnnserve.go.coords import from_sgf as sgf_point


class PositionError(ValueError):
    pass


@dataclass
class Position:
    board: Board
    to_move: int
    move_number: int  # moves played to reach it (0 for a text board)


# Far beyond any game (the longest professional games run past 400 moves; a random player
# against GNU Go, 500 to 700): it bounds the replay one request can ask for.
MAX_MOVES = 5000
_CHARS = {ch: color for color, ch in TEXT.items()}
_EXPECTED_BOARD = f"{SIZE} lines of {SIZE} points each: '.' empty, 'X' black, 'O' white"


def from_text(text: str, to_move: int) -> Position:
    """A position from 19 lines of ``.``, ``X`` (black), ``O`` (white), the top line first. Spaces
    between points are allowed, and blank lines before and after; the history is unknown."""
    if text.strip() == "":
        raise PositionError(f"board: empty; expected {_EXPECTED_BOARD}")
    lines = [line.replace(" ", "").replace("\t", "") for line in text.strip("\r\n").splitlines()]
    if len(lines) != SIZE:
        raise PositionError(f"board: {len(lines)} lines; expected {_EXPECTED_BOARD}")
    board = Board()
    for row, line in enumerate(lines):
        if len(line) != SIZE:
            raise PositionError(f"board: line {row + 1} has {len(line)} points; expected {_EXPECTED_BOARD}")
        for col, ch in enumerate(line):
            color = _CHARS.get(ch.upper())
            if color is None:
                raise PositionError(f"board: line {row + 1}, point {col + 1} is {ch!r}; expected '.', 'X' or 'O'")
            if color != EMPTY:
                board.place(color, point(row, col))
    try:
        board.check_setup()
    except ValueError as exc:
        raise PositionError(f"board: {exc}") from None
    return Position(board, to_move, 0)


def from_sgf(record: str, move_number: int | None = None, to_move: int | None = None) -> Position:
    """The position after the first ``move_number`` moves of the record's main line (0: the setup
    alone; None: the end of the record). ``to_move`` defaults to whoever's turn it is there: the
    opponent of the last move, or at the start PL, else white after handicap stones, else black."""
    try:
        game = sgf.parse(record)
    except sgf.SgfError as exc:
        raise PositionError(f"sgf: {exc}") from None
    root = game.root
    size = root.get("SZ", ["19"])[0].strip()
    if size not in ("19", "19:19"):
        raise PositionError(f"sgf: board size SZ[{size}]; only 19x19 boards are supported")
    if root.get("GM", ["1"])[0].strip() != "1":
        raise PositionError(f"sgf: GM[{root['GM'][0]}] is not a game of Go (GM[1])")
    total = sum(1 for node in game.nodes if "B" in node or "W" in node)
    if total > MAX_MOVES:
        raise PositionError(f"sgf: {total:,} moves; at most {MAX_MOVES:,}")
    if move_number is not None and not 0 <= move_number <= total:
        raise PositionError(f"move_number: {move_number}, but the record has {total} moves; expected 0 to {total}")
    target = total if move_number is None else move_number

    board = Board()
    handicap = _handicap(root)
    next_color = WHITE if handicap >= 2 else BLACK
    if handicap >= 2 and "AB" not in root:
        for p in fixed_handicap(handicap):
            board.place(BLACK, p)
    # Moves are played in runs, one call into C a run; a setup node ends a run.
    played = 0
    pending: list[Move] = []

    def flush() -> None:
        before = len(board.moves)
        error = board.play_many(pending)
        if error is not None:
            k = len(board.moves) - before
            prop = "B" if error.color == BLACK else "W"
            where = f"{prop}[{to_sgf(error.point)}]"
            raise PositionError(f"sgf: move {played - len(pending) + k + 1} ({where}): {error}")
        pending.clear()

    for number, node in enumerate(game.nodes):
        black, white = node.get("B"), node.get("W")
        if (black is not None or white is not None) and played == target:
            break
        if len(node) > (black is not None) + (white is not None):  # more than a move
            if "AB" in node or "AW" in node or "AE" in node:
                flush()
                _setup(board, node, number)
            if "PL" in node:
                next_color = _color(node["PL"][0], "PL", number)
        if black is not None:
            known = SGF_POINTS.get(black[0])
            pending.append(Move(BLACK, known if known is not None else _point(black[0], "B", number)))
            played += 1
            next_color = WHITE
        if white is not None:
            known = SGF_POINTS.get(white[0])
            pending.append(Move(WHITE, known if known is not None else _point(white[0], "W", number)))
            played += 1
            next_color = BLACK
    flush()
    if to_move is None:
        to_move = next_color
    return Position(board, to_move, played)


def _handicap(root: sgf.Node) -> int:
    value = root.get("HA", ["0"])[0].strip()
    try:
        handicap = int(value)
    except ValueError:
        raise PositionError(f"sgf: HA[{value}] is not a number of handicap stones") from None
    if handicap < 0 or handicap == 1 or (handicap > 9 and "AB" not in root):
        raise PositionError(f"sgf: HA[{value}]; expected 0, or 2 to 9 (more only with the stones in AB)")
    return handicap


def _setup(board: Board, node: sgf.Node, number: int) -> None:
    for prop, color in (("AE", EMPTY), ("AB", BLACK), ("AW", WHITE)):
        for value in node.get(prop, []):
            for p in _points(value, prop, number):
                board.place(color, p)
    try:
        board.check_setup()
    except ValueError as exc:
        raise PositionError(f"sgf: after the setup of node {number}: {exc}") from None


def _point(value: str, prop: str, number: int) -> int | None:
    try:
        return sgf_point(value.strip())
    except CoordinateError as exc:
        raise PositionError(f"sgf: node {number}, {prop}: {exc}") from None


def _points(value: str, prop: str, number: int) -> list[int]:
    """A point or a compressed rectangle ``aa:cc`` of setup stones."""
    first, sep, last = value.strip().partition(":")
    a, b = _point(first, prop, number), _point(last if sep else first, prop, number)
    if a is None or b is None:
        raise PositionError(f"sgf: node {number}, {prop}[{value}]: a setup stone cannot be a pass")
    (r0, c0), (r1, c1) = divmod(a, SIZE), divmod(b, SIZE)
    return [point(r, c) for r in range(min(r0, r1), max(r0, r1) + 1) for c in range(min(c0, c1), max(c0, c1) + 1)]


def _color(value: str, prop: str, number: int) -> int:
    color = {"B": BLACK, "W": WHITE}.get(value.strip().upper())
    if color is None:
        raise PositionError(f"sgf: node {number}, {prop}[{value}] is not B or W")
    return color


def describe(position: Position) -> str:
    """``"black to move after 30 moves (last: white Q16)"``."""
    moves = position.board.moves
    last = f" (last: {COLOR_NAMES[moves[-1].color]} {to_gtp(moves[-1].point)})" if moves else ""
    return f"{COLOR_NAMES[position.to_move]} to move after {position.move_number} moves{last}"
