"""A Go Text Protocol (version 2) engine: reads commands, keeps the board, answers.

It knows the rules but not how to choose a move: it asks the ``policy`` callable given to
:class:`Engine` for the network's 361 move probabilities (illegal points 0), given the board, the
colour to move and the game as an SGF record (``cnnserve gtp`` passes one that sends the record
to the server's policy network). ``genmove`` plays the most probable legal move that does not
fill one of the player's own eyes, or passes when there is none. (Skipping eye-filling moves
rather than passing at the first one: the network, trained or not, sometimes ranks an eye first
while good moves remain.) It also passes when the game is settled (:mod:`cnnserve.go.territory`:
every empty point is one side's area and no chain is in atari), and after the opponent's pass it
plays only on points that are nobody's area yet: the policy has no pass output, and without
these rules it would fill its own area until its groups lost their eyes.

The record is bounded: its setup (AB/AW) is the board as it was 8 moves ago, followed by the
last 8 moves (all of them early in the game, handicap stones as setup). The feature planes see no
further back (the turns-since planes stop at "7 or more, or set up", the ko is decided by the last
move), so the server computes the same planes as from the whole game, and a request stays the
same size however long the game. The probabilities of the current position and colour are kept,
so that genmove and the analysis commands ask the server once per position.

Besides GTP's own commands, the analysis commands of Go GUIs (:mod:`cnnserve.client.gtp_analysis`):
``lz-analyze`` and ``kata-analyze`` answer ``=`` and an info line at once, then the same line
every ``interval`` centiseconds from a ticker thread, while the engine keeps reading its input;
the next line that arrives (a command, or an empty line) ends the response with its blank line,
and a command is then answered as usual. ``lz-genmove_analyze`` and ``kata-genmove_analyze`` play
like genmove and answer an info line and ``play VERTEX``.

A failed command gets GTP's error reply (``? message``) and the engine reads on; only ``quit``
and the end of input stop it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import cnnserve
from cnnserve.client import gtp_analysis as analysis
from cnnserve.go import sgf, territory
from cnnserve.go.board import BLACK, COLOR_NAMES, EMPTY, TEXT, WHITE, Board, IllegalMove, Move, parse_color
from cnnserve.go.coords import COLUMNS, POINTS, SIZE, CoordinateError, fixed_handicap, from_gtp, to_gtp, to_sgf

# policy(board, colour to move, the game as an SGF record) -> the 361 move probabilities, index
# row * 19 + column from the top line, illegal points 0 (as the server's PolicyResponse gives).
Policy = Callable[[Board, int, str], Sequence[float]]

NAME = "cnnserve"
VERSION = cnnserve.__version__
# Moves the record sends after its setup: the turns-since planes tell ages 0 to 6 apart and put
# everything older (and every set-up stone) in "7 or more"; 8 keeps even the age-7 stone played.
HISTORY = 8
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
    "lz-analyze",
    "lz-genmove_analyze",
    "kata-analyze",
    "kata-genmove_analyze",
    "quit",
)


class GtpError(Exception):
    """A command that fails: its message becomes the ``?`` reply."""


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(line: str) -> str:
    """GTP's preprocessing: control characters removed, tabs made spaces, comments dropped."""
    line = _CONTROL.sub("", line.replace("\t", " "))
    return line.split("#", 1)[0].strip()


def bounded_record(setup: Board, moves: Sequence[Move], *, komi: float, to_move: int, handicap: int = 0) -> str:
    """An SGF record of ``setup``'s stones (AB/AW; ``handicap`` adds HA) followed by ``moves``;
    PL names the colour of the first move, or ``to_move`` when there is none."""
    root = f"GM[1]FF[4]CA[UTF-8]AP[cnnserve]SZ[19]KM[{komi:g}]"
    if handicap >= 2:
        root += f"HA[{handicap}]"
    stones = setup.stones
    for color, prop in ((BLACK, "AB"), (WHITE, "AW")):
        points = "".join(f"[{to_sgf(p)}]" for p in range(POINTS) if stones[p] == color)
        if points:
            root += prop + points
    first = moves[0].color if moves else to_move
    root += f"PL[{'B' if first == BLACK else 'W'}]"
    body = "".join(f";{'B' if m.color == BLACK else 'W'}[{to_sgf(m.point)}]" for m in moves)
    return f"(;{root}{body})\n"


class _Writer:
    """Whole replies and whole lines to the output, one writer at a time, flushed at once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            self.out.write(text)
            self.out.flush()


class _Ticker:
    """Writes one line every ``seconds`` on a thread of its own until stopped (it sleeps on an
    event between lines: no busy loop, and stopping does not wait for the next tick)."""

    def __init__(self, writer: _Writer, line: str, seconds: float) -> None:
        self.writer = writer
        self.line = line
        self.seconds = seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gtp-analysis", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.seconds):
            try:
                self.writer.write(self.line)
            except (OSError, ValueError):  # the reader went away; the input loop will see it too
                return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


class Engine:
    def __init__(self, policy: Policy, *, komi: float = 7.5, version: str = VERSION) -> None:
        self.policy = policy
        self.version = version
        self.board = Board()
        self.komi = komi
        self.handicap: list[int] = []  # black stones set up before the first move
        self._undo: list[Board] = []  # the board before each move, for undo and the record
        self._cached: tuple[tuple[int, str], list[float]] | None = None
        self._writer: _Writer | None = None
        self._opened: tuple[str, float] | None = None  # an analysis handle() opened: (line, interval)
        self._ticker: _Ticker | None = None
        self.done = False

    def record(self) -> str:
        """The whole game as an SGF record: komi, handicap stones, every move."""
        return sgf.write(self.board.moves, komi=self.komi, setup={BLACK: self.handicap})

    def policy_record(self, to_move: int) -> str:
        """The record the policy gets: the board of :data:`HISTORY` moves ago as setup, then the
        moves since (the whole game while it is shorter, handicap stones as setup)."""
        moves = self.board.moves
        count = min(HISTORY, len(moves))
        setup = self._undo[len(self._undo) - count] if count else self.board
        handicap = len(self.handicap) if count == len(moves) else 0
        return bounded_record(setup, moves[len(moves) - count :], komi=self.komi, to_move=to_move, handicap=handicap)

    def probabilities(self, color: int) -> list[float]:
        """The policy's 361 probabilities for ``color`` to play now; one call per position and
        colour (kept until the position or the colour changes)."""
        record = self.policy_record(color)
        key = (color, record)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        values = [float(v) for v in self.policy(self.board, color, record)]
        if len(values) != POINTS:
            raise ValueError(f"the policy gave {len(values)} probabilities; expected {POINTS}")
        self._cached = (key, values)
        return values

    def to_move(self) -> int:
        return analysis.side_to_move(self.board, bool(self.handicap))

    # -- the protocol --------------------------------------------------------------------

    def handle(self, line: str) -> str | None:
        """The full reply to one input line (with its blank line), or None for a line that is
        empty once cleaned (GTP ignores those). For lz-analyze and kata-analyze it is only the
        opening (``=`` and the first info line): :meth:`serve` repeats the line and ends the
        response when the next line arrives."""
        self._opened = None  # (serve() has ended any analysis before it reads on)
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
        if self._opened is not None:
            first = self._opened[0]
            return f"={ident}\n{first}"
        if not result:
            return f"={ident}\n\n"
        sep = "" if result.startswith("\n") else " "  # a multi-line reply starts on its own line
        return f"={ident}{sep}{result}\n\n"

    def serve(self, lines: Iterable[str], out: TextIO) -> None:
        """Answer ``lines`` on ``out`` until quit or the end of the input. A running analysis
        writes from its own thread meanwhile; whatever line arrives next ends it first."""
        self._writer = writer = _Writer(out)
        try:
            for line in lines:
                self._end_analysis()
                reply = self.handle(line)
                if reply is not None:
                    writer.write(reply)
                if self._opened is not None:
                    first, interval = self._opened
                    if first and interval > 0:  # interval 0: the first line alone
                        self._ticker = _Ticker(writer, first, interval / 100)
                if self.done:
                    return
        finally:
            self._end_analysis()

    def _end_analysis(self) -> None:
        if self._opened is None:
            return
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self._opened = None
        if self._writer is not None:
            self._writer.write("\n")  # the blank line that ends the analysis response

    def run(self, command: str, args: list[str]) -> str:
        method = getattr(self, f"cmd_{command.replace('-', '_')}", None) if command in COMMANDS else None
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
        return self.version

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
        try:
            self._play(color, move)
        except IllegalMove:
            raise GtpError("illegal move") from None
        return ""

    def cmd_genmove(self, args: list[str]) -> str:
        color = _color(_one(args, "genmove COLOR"))
        probabilities = self._ask(color, "cannot generate a move")
        move = self._choose(color, probabilities, None)
        self._play(color, move)
        return to_gtp(move)

    def cmd_lz_analyze(self, args: list[str]) -> str:
        return self._analyze(args, analysis.LZ)

    def cmd_kata_analyze(self, args: list[str]) -> str:
        return self._analyze(args, analysis.KATA)

    def cmd_lz_genmove_analyze(self, args: list[str]) -> str:
        return self._genmove_analyze(args, analysis.LZ)

    def cmd_kata_genmove_analyze(self, args: list[str]) -> str:
        return self._genmove_analyze(args, analysis.KATA)

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

    # -- helpers -------------------------------------------------------------------------

    def _ask(self, color: int, failure: str) -> list[float]:
        try:
            return self.probabilities(color)
        except Exception as exc:  # the engine must keep running whatever the server says
            raise GtpError(f"{failure}: {exc}") from None

    def _choose(self, color: int, probabilities: Sequence[float], args: analysis.AnalyzeArgs | None) -> int | None:
        """The most probable legal move that fills none of ``color``'s eyes (and that avoid and
        allow permit), or None to pass: when nothing is left to fight over, and, once the
        opponent has passed, rather than play where the stones already decide whose area it is."""
        board = self.board
        owner = territory.owners(board)
        if territory.settled(board, owner):
            return None
        opponent_passed = bool(board.moves) and board.moves[-1].point is None
        for p in sorted(range(POINTS), key=lambda q: (-probabilities[q], q)):
            if board.stones[p] != EMPTY or (args is not None and args.excluded(color, p)):
                continue
            if opponent_passed and owner[p] != EMPTY:
                continue
            if board.is_legal(color, p) and not board.is_eye(color, p):
                return p
        return None

    def _parse_analysis(self, args: list[str], kind: str) -> tuple[analysis.AnalyzeArgs, int]:
        try:
            parsed = analysis.parse(args, kind)
        except analysis.AnalyzeError as exc:
            raise GtpError(f"cannot parse analyze tags: {exc}") from None
        return parsed, parsed.color if parsed.color is not None else self.to_move()

    def _analyze(self, args: list[str], kind: str) -> str:
        parsed, color = self._parse_analysis(args, kind)
        probabilities = self._ask(color, "cannot analyze")
        moves = analysis.listed(self.board, color, probabilities, parsed)
        line = analysis.info_line(moves, probabilities, parsed)
        self._opened = (line + "\n" if line else "", parsed.interval)
        return ""

    def _genmove_analyze(self, args: list[str], kind: str) -> str:
        parsed, color = self._parse_analysis(args, kind)
        probabilities = self._ask(color, "cannot generate a move")
        line = analysis.info_line(analysis.listed(self.board, color, probabilities, parsed), probabilities, parsed)
        move = self._choose(color, probabilities, parsed)
        self._play(color, move)
        # One info line whatever the interval (KataGo reports at least once); the search is over
        # as soon as it starts, so no further line would differ.
        return "\n" + (line + "\n" if line else "") + f"play {to_gtp(move)}"

    def _play(self, color: int, move: int | None) -> None:
        before = self.board.copy()
        self.board.play(color, move)  # raises IllegalMove, changing nothing
        self._undo.append(before)

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
