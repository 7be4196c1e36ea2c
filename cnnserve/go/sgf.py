"""SGF (FF[4]) records: a small parser for what a position needs, and a writer for the GTP engine.

The parser reads the first game of a collection and follows its main line (the first variation at
every branch). It keeps every property; :mod:`cnnserve.go.position` replays the setup (AB, AW, AE,
HA, PL) and moves (B, W) of that line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnserve.go.board import BLACK, WHITE, Move
from cnnserve.go.coords import to_sgf

# The parser steps over whole tokens with these (a record is read on every Policy call).
_SPACE = re.compile(r"\s*")
_NAME = re.compile(r"[A-Za-z]*")
_VALUE = re.compile(r"\[((?:[^\\\]]|\\.)*)\]", re.DOTALL)  # [...], with \] and \\ escaped
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
# The usual nodes, one property with one plain value each (";B[pd];W[dp]"), read a run at a time.
_SIMPLE_RUN = re.compile(r"(?:;\s*[A-Z]+\s*\[[^\\\]]*\]\s*)+(?=[;()])")
_SIMPLE_NODE = re.compile(r";\s*([A-Z]+)\s*\[([^\\\]]*)\]")


class SgfError(ValueError):
    """A record that does not parse; the message says where."""


Node = dict[str, list[str]]


@dataclass(frozen=True)
class Record:
    """The main line of a game: its nodes in order, the root first."""

    nodes: list[Node]

    @property
    def root(self) -> Node:
        return self.nodes[0]


def parse(text: str) -> Record:
    """The main line of the first game tree in ``text``; :class:`SgfError` when it does not parse."""
    try:
        return _Parser(text).record()
    except RecursionError:
        raise SgfError("variations nest too deeply to read") from None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def where(self, i: int | None = None) -> str:
        i = self.i if i is None else i
        line = self.text.count("\n", 0, i) + 1
        column = i - (self.text.rfind("\n", 0, i) + 1) + 1
        return f"line {line}, column {column}"

    def fail(self, expected: str) -> SgfError:
        if self.i >= len(self.text):
            return SgfError(f"the record ends early (at {self.where()}); expected {expected}")
        return SgfError(f"unexpected {self.text[self.i]!r} at {self.where()}; expected {expected}")

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.i)
        assert match is not None  # \s* always matches
        self.i = match.end()

    def record(self) -> Record:
        start = self.text.find("(")
        if start < 0:
            raise SgfError("no game tree: an SGF record starts with '(;'")
        self.i = start
        nodes = self.tree(main_line=True)
        if not nodes:
            raise SgfError(f"the game tree at {self.where(start)} has no nodes; expected ';' after '('")
        return Record(nodes)

    def tree(self, main_line: bool) -> list[Node]:
        """One game tree from its '(' to its ')'; the nodes of its main line (empty when
        ``main_line`` is false: a variation is parsed only to be skipped)."""
        self.i += 1  # the '('
        nodes: list[Node] = []
        self.skip_space()
        while self.i < len(self.text) and self.text[self.i] == ";":
            run = _SIMPLE_RUN.match(self.text, self.i)
            if run is not None:
                self.i = run.end()
                if main_line:
                    nodes.extend({name: [value]} for name, value in _SIMPLE_NODE.findall(run.group()))
                continue
            self.i += 1
            node = self.node()
            if main_line:
                nodes.append(node)
            self.skip_space()
        first = True
        while True:
            self.skip_space()
            if self.i >= len(self.text):
                raise self.fail("')' to close the game tree")
            ch = self.text[self.i]
            if ch == ")":
                self.i += 1
                return nodes
            if ch != "(":
                raise self.fail("';', '(' or ')'")
            nodes.extend(self.tree(main_line and first))
            first = False

    def node(self) -> Node:
        node: Node = {}
        text = self.text
        while True:
            self.skip_space()
            start = self.i
            name = _NAME.match(text, start)
            assert name is not None  # [A-Za-z]* always matches
            if name.end() == start:
                return node
            self.i = name.end()
            # FF[3] allowed lower-case letters inside names (AddBlack); they are not part of the id.
            ident = name.group() if name.group().isupper() else "".join(ch for ch in name.group() if ch.isupper())
            if not ident:
                raise SgfError(f"property name {name.group()!r} at {self.where(start)} has no capital letters")
            values: list[str] = []
            self.skip_space()
            while self.i < len(text) and text[self.i] == "[":
                values.append(self.value())
                self.skip_space()
            if not values:
                raise self.fail(f"'[' to open a value of property {ident}")
            node.setdefault(ident, []).extend(values)

    def value(self) -> str:
        """A bracketed value; a backslash escapes the character after it."""
        match = _VALUE.match(self.text, self.i)
        if match is None:
            raise SgfError(f"the value opened at {self.where(self.i)} is never closed with ']'")
        self.i = match.end()
        raw = match.group(1)
        return _ESCAPE.sub(r"\1", raw) if "\\" in raw else raw


def write(moves: list[Move], *, komi: float = 0.0, setup: dict[int, list[int]] | None = None) -> str:
    """An SGF record of a game from the empty board, or from ``setup`` stones by colour (black
    setup stones alone are written as a handicap, so that white moves first)."""
    root = f"GM[1]FF[4]CA[UTF-8]AP[cnnserve]SZ[19]KM[{komi:g}]"
    black, white = (setup or {}).get(BLACK, []), (setup or {}).get(WHITE, [])
    if len(black) >= 2 and not white:
        root += f"HA[{len(black)}]"
    for color, prop in ((BLACK, "AB"), (WHITE, "AW")):
        points = (setup or {}).get(color, [])
        if points:
            root += prop + "".join(f"[{to_sgf(p)}]" for p in points)
    body = "".join(f";{'B' if m.color == BLACK else 'W'}[{to_sgf(m.point)}]" for m in moves)
    return f"(;{root}{body})\n"
