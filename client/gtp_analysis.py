"""The analysis commands of Go GUIs, for an engine whose only knowledge is a policy network.

Leela Zero's ``lz-analyze`` / ``lz-genmove_analyze`` and KataGo's ``kata-analyze`` /
``kata-genmove_analyze`` (Leela Zero's GTP.cpp and UCTSearch.cpp; KataGo's
docs/GTP_Extensions.md; Sabaki's docs/guides/engine-analysis-integration.md). Their info lines
describe a search: for every move considered, its visits, win rate, policy prior, lower
confidence bound and principal variation. An engine without a search or a value head fills them
in as follows, so that a GUI draws the policy:

- ``prior``: the network's probability of the move (the server's, illegal points at 0);
- ``visits``: ``round(1000 x prior)``, as if a search of 1,000 visits had spread them exactly as
  the policy does (Sabaki and Lizzie colour their heat maps by visits; Sabaki writes no numbers on
  a move with fewer than 10 visits, so only moves of 1% or more are labelled);
- ``winrate`` and ``lcb``: 50%, a neutral value (no value head), the same for every move, so that
  the visits alone decide the colours; KataGo's score fields (``scoreMean``, ``scoreLead``,
  ``scoreSelfplay``, ``scoreStdev``) and ``utility``/``utilityLcb`` are 0;
- ``pv``: the move alone (nothing is searched beyond it); ``order``: the rank by probability.

The moves listed are the legal moves with at least one visit (probability 0.05% or more), in
order of probability, then more legal moves if ``minmoves`` asks for them, at most ``maxmoves``;
moves that ``avoid`` names for the side analysed, or that ``allow`` leaves out, are not listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cnnserve.go.board import BLACK, WHITE, Board, parse_color
from cnnserve.go.coords import CoordinateError, from_gtp, point, row_col, to_gtp

LZ, KATA = "lz", "kata"
VISITS_SCALE = 1000  # visits = round(VISITS_SCALE x probability)
WINRATE = 0.5
# KataGo's kata-only keys: booleans. Ownership needs a value head; the engine accepts the keys (a
# GUI may always send them) and prints nothing for them. pvVisits/pvEdgeVisits are printed.
_KATA_FLAGS = {
    "rootinfo": "root_info",
    "ownership": "ownership",
    "ownershipstdev": "ownership_stdev",
    "movesownership": "moves_ownership",
    "movesownershipstdev": "moves_ownership_stdev",
    "pvvisits": "pv_visits",
    "pvedgevisits": "pv_edge_visits",
}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_MAX_INTERVAL = 1e9  # centiseconds; beyond it, a typo rather than an interval


class AnalyzeError(ValueError):
    """Analysis arguments that do not parse; the message says which."""


@dataclass
class AnalyzeArgs:
    """``[color] [interval] [key value]...`` of the four analysis commands."""

    kind: str  # LZ or KATA: the output format
    color: int | None = None  # None: the side to move
    interval: float = 0.0  # centiseconds between info lines; 0: one line
    min_moves: int = 0
    max_moves: int | None = None
    # Per colour, the points not to list for that colour at the root (avoid), or the only ones to
    # list (allow). Every until-depth is at least 1, and the root move is depth 1, so all apply.
    avoid: dict[int, set[int]] = field(default_factory=dict)
    allow: dict[int, set[int]] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)

    def excluded(self, color: int, p: int) -> bool:
        if p in self.avoid.get(color, ()):
            return True
        allowed = self.allow.get(color)
        return allowed is not None and p not in allowed


def parse(args: Sequence[str], kind: str) -> AnalyzeArgs:
    """The arguments after the command name, as Leela Zero and KataGo accept them: a colour, an
    interval in centiseconds (a bare number, or ``interval N``; KataGo's may be a float), then
    ``minmoves N``, ``maxmoves N``, ``avoid COLOR VERTICES DEPTH``, ``allow COLOR VERTICES DEPTH``
    (vertices comma-separated; ``pass`` and Leela Zero's rectangles ``A1:C3`` allowed) and, for
    the kata- commands, KataGo's boolean keys. Like Leela Zero, the colour and the bare interval
    may come anywhere."""
    result = AnalyzeArgs(kind)
    words = list(args)
    i = 0
    while i < len(words):
        word, key = words[i], words[i].lower()
        i += 1
        if key in ("b", "black", "w", "white"):
            result.color = parse_color(word)
            continue
        if _number(word) is not None:
            result.interval = _interval(word)
            continue
        if key not in ("interval", "minmoves", "maxmoves", "avoid", "allow") and not (
            kind == KATA and key in _KATA_FLAGS
        ):
            raise AnalyzeError(f"unknown key {word!r}")
        if i >= len(words):
            raise AnalyzeError(f"{word} needs a value")
        value = words[i]
        i += 1
        if key == "interval":
            result.interval = _interval(value)
        elif key in ("minmoves", "maxmoves"):
            if not value.isdigit():
                raise AnalyzeError(f"{word} {value}: expected a number of moves")
            if key == "minmoves":
                result.min_moves = int(value)
            else:
                result.max_moves = int(value)
        elif key in ("avoid", "allow"):
            if i + 2 > len(words):
                raise AnalyzeError(f"{word} needs COLOR VERTICES UNTIL_DEPTH")
            vertices, depth = words[i], words[i + 1]
            i += 2
            _restrict(result, key, value, vertices, depth)
        else:  # one of KataGo's flags
            if value.lower() not in _TRUE + _FALSE:
                raise AnalyzeError(f"{word} {value}: expected true or false")
            result.flags[_KATA_FLAGS[key]] = value.lower() in _TRUE
    return result


def _number(word: str) -> float | None:
    try:
        value = float(word)
    except ValueError:
        return None
    return value if word[:1].isdigit() or word[:1] == "." else None  # not "nan", "inf", "-1"


def _interval(word: str) -> float:
    value = _number(word)
    if value is None or not math.isfinite(value) or not 0 <= value < _MAX_INTERVAL:
        raise AnalyzeError(f"interval {word}: expected centiseconds, 0 or more")
    return value


def _restrict(result: AnalyzeArgs, key: str, color_text: str, vertices: str, depth: str) -> None:
    try:
        color = parse_color(color_text)
    except ValueError:
        raise AnalyzeError(f"{key} {color_text}: expected a colour") from None
    if not depth.isdigit() or int(depth) < 1:
        raise AnalyzeError(f"{key} ... {depth}: expected an until-depth of 1 or more")
    points: set[int] = set()
    for item in vertices.split(","):
        item = item.strip()
        if item:
            points |= _vertices(item, key)
    # KataGo's rule: for one colour, one allow at most, and never both allow and avoid.
    if (key == "allow" and (color in result.allow or color in result.avoid)) or (
        key == "avoid" and color in result.allow
    ):
        raise AnalyzeError(f"{key}: one allow per colour, and not together with avoid")
    target = result.avoid if key == "avoid" else result.allow
    target.setdefault(color, set()).update(points)


def _vertices(item: str, key: str) -> set[int]:
    """One vertex (``pass`` and ``resign`` name no point) or a rectangle ``A1:C3``."""
    if item.lower() in ("pass", "resign"):
        return set()
    first, sep, last = item.partition(":")
    try:
        a, b = from_gtp(first), from_gtp(last if sep else first)
    except CoordinateError:
        raise AnalyzeError(f"{key}: {item!r} is not a vertex") from None
    if a is None or b is None:
        raise AnalyzeError(f"{key}: {item!r} is not a vertex or a rectangle of them")
    (r0, c0), (r1, c1) = row_col(a), row_col(b)
    return {point(r, c) for r in range(min(r0, r1), max(r0, r1) + 1) for c in range(min(c0, c1), max(c0, c1) + 1)}


def visits(probability: float) -> int:
    return int(probability * VISITS_SCALE + 0.5)


def candidates(board: Board, color: int, probabilities: Sequence[float], args: AnalyzeArgs) -> list[int]:
    """The legal points for ``color`` not excluded by avoid/allow, most probable first (ties in
    index order)."""
    points = [p for p in board.legal_points(color) if not args.excluded(color, p)]
    points.sort(key=lambda p: (-probabilities[p], p))
    return points


def listed(board: Board, color: int, probabilities: Sequence[float], args: AnalyzeArgs) -> list[int]:
    """The moves an info line lists: those with a visit, at least ``minmoves``, at most
    ``maxmoves``."""
    points = candidates(board, color, probabilities, args)
    count = sum(1 for p in points if visits(probabilities[p]) >= 1)  # a prefix: sorted by probability
    count = max(count, args.min_moves)
    if args.max_moves is not None:
        count = min(count, args.max_moves)
    return points[:count]


def info_line(moves: Sequence[int], probabilities: Sequence[float], args: AnalyzeArgs) -> str:
    """All the moves' infos on one line, as Leela Zero and KataGo print them (no newline); empty
    when there is no move to list (the caller then prints no line: an empty line would end the
    GTP response)."""
    fmt = _lz_info if args.kind == LZ else _kata_info
    return " ".join(fmt(order, p, probabilities[p], args) for order, p in enumerate(moves))


def _lz_info(order: int, p: int, probability: float, args: AnalyzeArgs) -> str:
    # Leela Zero's OutputAnalysisData::get_info_string: integers, win rate and prior times 10000
    # truncated (static_cast<int>), lcb as the win rate.
    move = to_gtp(p)
    winrate = int(WINRATE * 10000)
    return (
        f"info move {move} visits {visits(probability)} winrate {winrate} prior {int(probability * 10000)} "
        f"lcb {winrate} order {order} pv {move}"
    )


def _kata_info(order: int, p: int, probability: float, args: AnalyzeArgs) -> str:
    # KataGo's field order (cpp/command/gtp.cpp, as in docs/GTP_Extensions.md), its numbers as a
    # C++ ostream prints doubles by default: six significant digits (Python's "g").
    move, n = to_gtp(p), visits(probability)
    text = (
        f"info move {move} visits {n} utility 0 winrate {WINRATE:g} scoreMean 0 scoreStdev 0 scoreLead 0 "
        f"scoreSelfplay 0 prior {probability:.6g} lcb {WINRATE:g} utilityLcb 0 order {order} pv {move}"
    )
    if args.flags.get("pv_visits"):
        text += f" pvVisits {n}"
    if args.flags.get("pv_edge_visits"):
        text += f" pvEdgeVisits {n}"
    return text


def side_to_move(board: Board, handicap: bool) -> int:
    """Whose turn it is: the opponent of the last move; at the start white after handicap
    stones, else black."""
    if board.moves:
        return WHITE if board.moves[-1].color == BLACK else BLACK
    return WHITE if handicap else BLACK
