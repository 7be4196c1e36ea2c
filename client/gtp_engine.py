"""A Go Text Protocol (version 2) engine: reads commands, keeps the board, answers.

It knows the rules but not how to choose a move: ``genmove`` asks the ``choose`` callable given to
:class:`Engine` with the board and the game as an SGF record (``cnnserve gtp`` passes one that
sends the record to the server's policy network). A failed
command gets GTP's error reply (``? message``) and the engine reads on; only ``quit`` and the end
of input stop it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TextIO

import cnnserve
from cnnserve.go import sgf
from cnnserve.go.board import BLACK, COLOR_NAMES, TEXT, Board, IllegalMove, parse_color
from cnnserve.go.coords import COLUMNS, POINTS, SIZE, CoordinateError, fixed_handicap, from_gtp, to_gtp

# choose(board, colour, the game as an SGF record) -> a legal point for colour, or None to pass.
Chooser = Callable[[Board, int, str], "int | None"]

NAME = "cnnserve"
VERSION = cnnserve.__version__
COMMANDS = (
    "protocol_version",
    "name",
    "version",
    "known_command",
    "list_commands",
    "boardsize",
    "clear_board",
    "komi",
    "play",
    "genmove",
    "undo",
    "showboard",
    "fixed_handicap",
    "place_free_handicap",
    "set_free_handicap",
    "quit",
)


class GtpError(Exception):
    """A command that fails: its message becomes the ``?`` reply."""


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(line: str) -> str:
    """GTP's preprocessing: control characters removed, tabs made spaces, comments dropped."""
    line = _CONTROL.sub("", line.replace("\t", " "))
    return line.split("#", 1)[0].strip()


class Engine:
    def __init__(self, choose: Chooser, *, komi: float = 7.5) -> None:
        self.choose = choose
        self.board = Board()
        self.komi = komi
        self.handicap: list[int] = []  # black stones set up before the first move
        self._undo: list[Board] = []
        self.done = False

    def record(self) -> str:
        """The game so far as an SGF record: komi, handicap stones, every move."""
        return sgf.write(self.board.moves, komi=self.komi, setup={BLACK: self.handicap})

    def handle(self, line: str) -> str | None:
        """The full reply to one input line (with its blank line), or None for a line that is
        empty once cleaned (GTP ignores those)."""
        text = clean(line)
        if not text:
            return None
        words = text.split()
        ident = ""
        if words[0].isdigit():
            ident = words.pop(0)
            if not words:
                return f"?{ident} missing command\n\n"
        command, args = words[0], words[1:]
        try:
            result = self.run(command, args)
        except GtpError as exc:
            return f"?{ident} {exc}\n\n"
        if not result:
            return f"={ident}\n\n"
        sep = "" if result.startswith("\n") else " "  # a multi-line reply starts on its own line
        return f"={ident}{sep}{result}\n\n"

    def serve(self, lines: Iterable[str], out: TextIO) -> None:
        for line in lines:
            reply = self.handle(line)
            if reply is not None:
                out.write(reply)
                out.flush()
            if self.done:
                return

    def run(self, command: str, args: list[str]) -> str:
        method = getattr(self, f"cmd_{command}", None) if command in COMMANDS else None
        if method is None:
            raise GtpError("unknown command")
        result: str = method(args)
        return result

    # -- commands ------------------------------------------------------------------------

    def cmd_protocol_version(self, args: list[str]) -> str:
        return "2"

    def cmd_name(self, args: list[str]) -> str:
        return NAME

    def cmd_version(self, args: list[str]) -> str:
        return VERSION

    def cmd_known_command(self, args: list[str]) -> str:
        return "true" if len(args) == 1 and args[0] in COMMANDS else "false"

    def cmd_list_commands(self, args: list[str]) -> str:
        return "\n".join(COMMANDS)

    def cmd_quit(self, args: list[str]) -> str:
        self.done = True
        return ""

    def cmd_boardsize(self, args: list[str]) -> str:
        size = _one(args, "boardsize SIZE")
        if not size.isdigit():
            raise GtpError("boardsize not an integer")
        if int(size) != SIZE:
            raise GtpError("unacceptable size")  # the network is for 19x19 only
        self._clear()
        return ""

    def cmd_clear_board(self, args: list[str]) -> str:
        self._clear()
        return ""

    def cmd_komi(self, args: list[str]) -> str:
        value = _one(args, "komi FLOAT")
        try:
            self.komi = float(value)
        except ValueError:
            raise GtpError("komi not a float") from None
        return ""

    def cmd_play(self, args: list[str]) -> str:
        if len(args) != 2:
            raise GtpError("syntax error: expected play COLOR VERTEX")
        color, move = _color(args[0]), _vertex(args[1])
        before = self.board.copy()
        try:
            self.board.play(color, move)
        except IllegalMove:
            raise GtpError("illegal move") from None
        self._undo.append(before)
        return ""

    def cmd_genmove(self, args: list[str]) -> str:
        color = _color(_one(args, "genmove COLOR"))
        try:
            move = self.choose(self.board, color, self.record())
        except Exception as exc:  # the engine must keep running whatever the server says
            raise GtpError(f"cannot generate a move: {exc}") from None
        if move is not None and not self.board.is_legal(color, move):
            raise GtpError(f"cannot generate a move: the policy chose {to_gtp(move)}, which is illegal")
        before = self.board.copy()
        self.board.play(color, move)
        self._undo.append(before)
        return to_gtp(move)

    def cmd_undo(self, args: list[str]) -> str:
        if not self._undo:
            raise GtpError("cannot undo")
        self.board = self._undo.pop()
        return ""

    def cmd_showboard(self, args: list[str]) -> str:
        return "\n" + render(self.board)

    def cmd_fixed_handicap(self, args: list[str]) -> str:
        count = _one(args, "fixed_handicap NUMBER")
        if not count.isdigit():
            raise GtpError("syntax error: expected fixed_handicap NUMBER")
        try:
            points = fixed_handicap(int(count))
        except ValueError:
            raise GtpError("invalid number of stones") from None
        return self._set_handicap(points)

    def cmd_place_free_handicap(self, args: list[str]) -> str:
        # The engine's choice of free placement is the fixed one: what the policy expects most.
        count = _one(args, "place_free_handicap NUMBER")
        if not count.isdigit() or not 2 <= int(count) <= 9:
            raise GtpError("invalid number of stones")  # more than 9 is allowed, but not offered
        return self._set_handicap(fixed_handicap(int(count)))

    def cmd_set_free_handicap(self, args: list[str]) -> str:
        try:
            points = [_vertex(a) for a in args]
        except GtpError:
            raise GtpError("bad vertex list") from None
        if len(points) < 2 or None in points or len(set(points)) != len(points) or len(points) >= POINTS:
            raise GtpError("bad vertex list")
        self._set_handicap([p for p in points if p is not None])
        return ""

    def _set_handicap(self, points: list[int]) -> str:
        if any(self.board.stones) or self.board.moves:
            raise GtpError("board not empty")
        for p in points:
            self.board.place(BLACK, p)
        self.handicap = points
        return " ".join(to_gtp(p) for p in points)

    def _clear(self) -> None:
        self.board = Board()
        self.handicap = []
        self._undo.clear()


def render(board: Board, marks: dict[int, str] | None = None, *, footer: bool = True) -> str:
    """The board with coordinates all round, GNU Go's way; ``marks`` draws characters on points;
    ``footer`` adds a line with the moves played and the prisoners."""
    marks = marks or {}
    letters = "   " + " ".join(COLUMNS)
    lines = [letters]
    for row in range(SIZE):
        number = SIZE - row
        cells = []
        for col in range(SIZE):
            p = row * SIZE + col
            cells.append(marks.get(p, TEXT[board.stones[p]]))
        lines.append(f"{number:2d} {' '.join(cells)} {number:<2d}".rstrip())
    lines.append(letters)
    if not footer:
        return "\n".join(lines)
    captured = ", ".join(f"{COLOR_NAMES[c]} has captured {n}" for c, n in board.prisoners.items())
    lines.append(f"{len(board.moves)} moves played; {captured}; X black, O white")
    return "\n".join(lines)


def _one(args: list[str], usage: str) -> str:
    if len(args) != 1:
        raise GtpError(f"syntax error: expected {usage}")
    return args[0]


def _color(text: str) -> int:
    try:
        return parse_color(text)
    except ValueError:
        raise GtpError("syntax error: invalid color") from None


def _vertex(text: str) -> int | None:
    try:
        return from_gtp(text)
    except CoordinateError:
        raise GtpError("syntax error: invalid vertex") from None
