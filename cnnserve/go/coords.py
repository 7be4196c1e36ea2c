"""Points of the 19x19 board and their names.

A point is an index ``row * 19 + col`` with row 0 the top line (as in SGF, a text board, the
feature planes and the policy's 361 outputs) and col 0 the left column. GTP names points by a
column letter A to T without I and a row number counted from the bottom: the top-left point is
``A19``, the bottom-left ``A1``. ``None`` is a pass.
"""

from __future__ import annotations

SIZE = 19
POINTS = SIZE * SIZE
COLUMNS = "ABCDEFGHJKLMNOPQRST"  # GTP skips I


class CoordinateError(ValueError):
    pass


def point(row: int, col: int) -> int:
    return row * SIZE + col


def row_col(p: int) -> tuple[int, int]:
    return divmod(p, SIZE)


def to_gtp(p: int | None) -> str:
    """``"D4"``, or ``"pass"`` for None."""
    if p is None:
        return "pass"
    row, col = divmod(p, SIZE)
    return f"{COLUMNS[col]}{SIZE - row}"


def from_gtp(vertex: str) -> int | None:
    """A GTP vertex (``"D4"``, ``"q16"``, ``"pass"``), case-insensitive; None for a pass."""
    text = vertex.strip().upper()
    if text == "PASS":
        return None
    # isdigit() alone also takes digits int() cannot read (superscripts): ASCII only.
    if len(text) < 2 or text[0] not in COLUMNS or not (text[1:].isascii() and text[1:].isdigit()):
        raise CoordinateError(f"{vertex!r} is not a vertex: expected a column A to T (no I) and a row 1 to 19, or pass")
    number = int(text[1:])
    if not 1 <= number <= SIZE:
        raise CoordinateError(f"{vertex!r} is off the board: rows run 1 to {SIZE}")
    return point(SIZE - number, COLUMNS.index(text[0]))


def to_sgf(p: int | None) -> str:
    """SGF's two letters, column then row from the top (``"aa"`` the top-left); ``""`` a pass."""
    if p is None:
        return ""
    row, col = divmod(p, SIZE)
    return chr(ord("a") + col) + chr(ord("a") + row)


def from_sgf(value: str) -> int | None:
    """SGF's point value; ``""`` and ``"tt"`` (the old pass on boards up to 19) are passes."""
    p = SGF_POINTS.get(value)
    if p is not None:
        return p
    if value == "" or value == "tt":
        return None
    if len(value) != 2 or not all("a" <= ch < chr(ord("a") + SIZE) for ch in value):
        raise CoordinateError(f"[{value}] is not a point of a 19x19 board (expected two letters a to s)")
    return point(ord(value[1]) - ord("a"), ord(value[0]) - ord("a"))


def _neighbours(p: int) -> tuple[int, ...]:
    row, col = divmod(p, SIZE)
    steps = ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1))
    return tuple(point(r, c) for r, c in steps if 0 <= r < SIZE and 0 <= c < SIZE)


def _diagonals(p: int) -> tuple[int, ...]:
    row, col = divmod(p, SIZE)
    steps = ((row - 1, col - 1), (row - 1, col + 1), (row + 1, col - 1), (row + 1, col + 1))
    return tuple(point(r, c) for r, c in steps if 0 <= r < SIZE and 0 <= c < SIZE)


# Looked up on every step of every flood fill, so computed once.
NEIGHBOURS: tuple[tuple[int, ...], ...] = tuple(_neighbours(p) for p in range(POINTS))
DIAGONALS: tuple[tuple[int, ...], ...] = tuple(_diagonals(p) for p in range(POINTS))


# SGF's two letters to a point; SGF replay looks up every move here.
SGF_POINTS = {to_sgf(p): p for p in range(POINTS)}

# GTP's fixed_handicap placement on 19x19 (GTP 2 draft, section 4.1.1), also what SGF's HA means
# when a record gives no AB.
_FIXED_HANDICAP = {
    2: "D4 Q16",
    3: "D4 Q16 D16",
    4: "D4 Q16 D16 Q4",
    5: "D4 Q16 D16 Q4 K10",
    6: "D4 Q16 D16 Q4 D10 Q10",
    7: "D4 Q16 D16 Q4 D10 Q10 K10",
    8: "D4 Q16 D16 Q4 D10 Q10 K4 K16",
    9: "D4 Q16 D16 Q4 D10 Q10 K4 K16 K10",
}


def fixed_handicap(stones: int) -> list[int]:
    """The points of ``stones`` (2 to 9) handicap stones; ValueError for another number."""
    if stones not in _FIXED_HANDICAP:
        raise ValueError(f"{stones} handicap stones: a fixed handicap is 2 to 9 stones")
    return [p for p in map(from_gtp, _FIXED_HANDICAP[stones].split()) if p is not None]
