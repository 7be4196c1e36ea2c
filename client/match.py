"""``cnnserve match``: games between cnnserve's GTP engine and any GTP engine, refereed, with the
record and the result's uncertainty, as gogui-twogtp and gomill's ringmaster run them.

    cnnserve match --opponent "gnugo --mode gtp --level 0" --games 40 --out matches/gnugo-l0

The first player is ``cnnserve gtp`` on a running server (``--server``, ``--model``), or any
engine command (``--engine``). Colours alternate: cnnserve's engine has black in odd games. A
referee engine (GNU Go with Chinese rules unless ``--referee`` says otherwise) is told every move
and judges it: a move the referee refuses loses the game for the side that played it. A game
ends after two passes in a row, a resignation, or ``--max-moves`` (then the referee's estimate
decides, and the record says so); a finished game is scored with the referee's ``final_score``,
which judges dead stones. Each game is saved as SGF, then a line in ``results.jsonl``: a match
stopped half way goes on from there when run again with the same ``--out``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnserve.errors import CommandError
from cnnserve.go.gtp_controller import GtpEngine, GtpError, find_gnugo
from cnnserve.go.selfplay import vertex_to_sgf
from cnnserve.tables import render_table

RESULTS = "results.jsonl"
SIZE = 19


@dataclass(frozen=True)
class MatchSettings:
    engine: tuple[str, ...]
    opponent: tuple[str, ...]
    referee: tuple[str, ...]
    komi: float = 7.5
    max_moves: int = 600


@dataclass
class Outcome:
    game: int
    engine_color: str  # "B" or "W": the colour cnnserve's engine (the first player) had
    result: str  # SGF's RE: "B+3.5", "W+R", "B+F" (the other side forfeited), "0"
    reason: str  # "two passes", "resignation", "illegal move", "cut at N moves"
    moves: int
    black: str  # the engines' names
    white: str
    seconds: float
    file: str = ""
    record: list[tuple[str, str]] = field(default_factory=list, repr=False)

    @property
    def winner(self) -> str | None:
        return self.result[0] if self.result[:1] in ("B", "W") else None

    @property
    def engine_won(self) -> bool:
        return self.winner == self.engine_color


def _name(engine: GtpEngine) -> str:
    name, version = engine.ask("name"), engine.ask("version")
    return " ".join(text for ok, text in (name, version) if ok and text) or engine.name


def _opposite(color: str) -> str:
    return "W" if color == "B" else "B"


def play_game(number: int, settings: MatchSettings) -> Outcome:
    """Game ``number`` (1-based; cnnserve's engine is black in odd games) with fresh processes."""
    started = time.monotonic()
    engine_color = "B" if number % 2 else "W"
    with (
        GtpEngine(settings.engine, "the engine") as engine,
        GtpEngine(settings.opponent, "the opponent") as opponent,
        GtpEngine(settings.referee, "the referee") as referee,
    ):
        players = {engine_color: engine, _opposite(engine_color): opponent}
        for gtp in (engine, opponent, referee):
            gtp.send(f"boardsize {SIZE}")
            gtp.send("clear_board")
            gtp.send(f"komi {settings.komi:g}")
        names = {color: _name(players[color]) for color in "BW"}
        record: list[tuple[str, str]] = []
        color, passes, result, reason = "B", 0, "", ""
        while passes < 2 and len(record) < settings.max_moves:
            gtp_color = "black" if color == "B" else "white"
            vertex = players[color].send(f"genmove {gtp_color}").strip().upper()
            if vertex == "RESIGN":
                result, reason = f"{_opposite(color)}+R", "resignation"
                break
            accepted, refusal = referee.ask(f"play {gtp_color} {vertex}")
            if not accepted:
                result, reason = f"{_opposite(color)}+F", f"illegal move {gtp_color} {vertex} ({refusal})"
                break
            players[_opposite(color)].send(f"play {gtp_color} {vertex}")
            record.append((color, "pass" if vertex == "PASS" else vertex))
            passes = passes + 1 if vertex == "PASS" else 0
            color = _opposite(color)
        if not result:
            cut = passes < 2
            # final_score reads the dead stones of a finished game; on a board cut short it can
            # take many seconds, and the referee's estimate is what a cut game deserves.
            score = referee.send("estimate_score" if cut else "final_score").split()[0]
            result = "0" if score.upper() in ("0", "JIGO") else score
            reason = f"cut at {settings.max_moves} moves, score estimated" if cut else "two passes"
    return Outcome(number, engine_color, result, reason, len(record), names["B"], names["W"],
                   time.monotonic() - started, record=record)  # fmt: skip


def to_sgf(outcome: Outcome, settings: MatchSettings) -> str:
    note = f"cnnserve match, game {outcome.game}: {outcome.reason}; referee: {shlex.join(settings.referee)}"
    root = (
        f"GM[1]FF[4]CA[UTF-8]AP[cnnserve match]SZ[{SIZE}]KM[{settings.komi:g}]RU[Chinese]"
        f"PB[{_escape(outcome.black)}]PW[{_escape(outcome.white)}]RE[{outcome.result}]"
        f"DT[{time.strftime('%Y-%m-%d')}]GN[game {outcome.game}]GC[{_escape(note)}]"
    )
    moves = "".join(f";{color}[{vertex_to_sgf(vertex, SIZE)}]" for color, vertex in outcome.record)
    return f"(;{root}\n{moves})\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("]", "\\]")


# -- the tally -------------------------------------------------------------------------------------


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) for no trials."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def elo(p: float) -> float:
    """The rating difference at which the expected score is ``p`` (infinite at 0 and 1)."""
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return 400 * math.log10(p / (1 - p))


@dataclass(frozen=True)
class Tally:
    games: int
    wins: int
    losses: int
    draws: int
    wins_as_black: int
    games_as_black: int
    wins_as_white: int
    games_as_white: int
    win_rate: float
    interval: tuple[float, float]
    elo: float
    elo_interval: tuple[float, float]
    reasons: dict[str, int]
    mean_moves: float


def tally(outcomes: Sequence[Outcome]) -> Tally:
    n = len(outcomes)
    wins = sum(o.engine_won for o in outcomes)
    draws = sum(o.winner is None for o in outcomes)
    score = wins + 0.5 * draws
    low, high = wilson(score, n)
    reasons: dict[str, int] = {}
    for o in outcomes:
        kind = o.reason.split(" (")[0] if not o.reason.startswith("cut") else "cut"
        kind = "illegal move" if kind.startswith("illegal move") else kind
        reasons[kind] = reasons.get(kind, 0) + 1
    as_black = [o for o in outcomes if o.engine_color == "B"]
    as_white = [o for o in outcomes if o.engine_color == "W"]
    return Tally(
        games=n,
        wins=wins,
        losses=n - wins - draws,
        draws=draws,
        wins_as_black=sum(o.engine_won for o in as_black),
        games_as_black=len(as_black),
        wins_as_white=sum(o.engine_won for o in as_white),
        games_as_white=len(as_white),
        win_rate=score / n if n else 0.0,
        interval=(low, high),
        elo=elo(score / n) if n else 0.0,
        elo_interval=(elo(low), elo(high)),
        reasons=reasons,
        mean_moves=sum(o.moves for o in outcomes) / n if n else 0.0,
    )


def _signed(value: float) -> str:
    return "-inf" if value == -math.inf else "+inf" if value == math.inf else f"{value:+.0f}"


def report(t: Tally, engine: str, opponent: str) -> str:
    rows = [[
        str(t.games), str(t.wins), str(t.losses), str(t.draws), f"{t.win_rate:.1%}",
        f"{t.interval[0]:.1%} to {t.interval[1]:.1%}",
        f"{_signed(t.elo)} ({_signed(t.elo_interval[0])} to {_signed(t.elo_interval[1])})",
    ]]  # fmt: skip
    table = render_table(["games", "wins", "losses", "draws", "win rate", "95% interval", "Elo difference (95%)"],
                         rows, align="rrrrrrr")  # fmt: skip
    ended = ", ".join(f"{kind} {count}" for kind, count in sorted(t.reasons.items()))
    return (
        f"{engine} against {opponent}\n{table}\n"
        f"as black {t.wins_as_black}/{t.games_as_black}, as white {t.wins_as_white}/{t.games_as_white}; "
        f"{t.mean_moves:.0f} moves a game on average; ended by: {ended}"
    )


# -- the command -----------------------------------------------------------------------------------


def read_results(out: Path) -> list[Outcome]:
    path = out / RESULTS
    if not path.exists():
        return []
    return [Outcome(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run(settings: MatchSettings, games: int, out: Path, parallel: int = 1, progress: bool = True) -> list[Outcome]:
    """Play the games ``out`` lacks, ``parallel`` at a time; every outcome, old and new, in order."""
    out.mkdir(parents=True, exist_ok=True)
    done = {o.game: o for o in read_results(out)}
    todo = [n for n in range(1, games + 1) if n not in done]
    lock = threading.Lock()

    def one(number: int) -> Outcome:
        outcome = play_game(number, settings)
        outcome.file = f"game-{number:03d}.sgf"
        (out / outcome.file).write_text(to_sgf(outcome, settings), encoding="utf-8")
        with lock:
            line = {k: v for k, v in asdict(outcome).items() if k != "record"}
            with (out / RESULTS).open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
            done[number] = outcome
            if progress:
                finished = [o for o in done.values() if o.game <= games]
                wins = sum(o.engine_won for o in finished)
                print(f"[{len(finished)}/{games}] game {number}: engine {outcome.engine_color}, {outcome.result} "
                      f"after {outcome.moves} moves ({outcome.reason}, {outcome.seconds:.0f}s); "
                      f"engine {wins}-{len(finished) - wins}", file=sys.stderr, flush=True)  # fmt: skip
        return outcome

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for future in [pool.submit(one, n) for n in todo]:
            future.result()
    return [done[n] for n in sorted(done) if n <= games]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--opponent", required=True, metavar="COMMAND",
                        help='the other engine\'s command line, e.g. "gnugo --mode gtp --level 0"')  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="folder for the records and results.jsonl")
    parser.add_argument("--games", type=int, default=10, help="games in the match (default 10)")
    parser.add_argument("--server", default="localhost:8001", help="the server cnnserve gtp plays through")
    parser.add_argument("--model", default="alphago_policy", help="the policy model (default alphago_policy)")
    parser.add_argument("--engine", metavar="COMMAND", help="another first player instead of cnnserve gtp")
    parser.add_argument("--referee", metavar="COMMAND",
                        help="the engine that judges moves and scores (default: GNU Go, Chinese rules)")  # fmt: skip
    parser.add_argument("--komi", type=float, default=7.5)
    parser.add_argument("--max-moves", type=int, default=600, help="a game is cut here and its score estimated")
    parser.add_argument("--parallel", type=int, default=1, help="games at once, each with its own processes")


def main(args: argparse.Namespace) -> int:
    if args.games < 1 or args.max_moves < 1 or args.parallel < 1:
        raise CommandError("--games, --max-moves and --parallel: expected at least 1")
    engine = (
        shlex.split(args.engine)
        if args.engine
        else [sys.executable, "-m", "cnnserve", "gtp", "--server", args.server, "--model", args.model]
    )
    if args.referee:
        referee = shlex.split(args.referee)
    else:
        gnugo = find_gnugo()
        if gnugo is None:
            raise CommandError("the referee is GNU Go, which is not installed (Debian: gnugo); or give --referee")
        referee = [gnugo, "--mode", "gtp", "--chinese-rules"]
    opponent = shlex.split(args.opponent)
    if not opponent:
        raise CommandError("--opponent: expected an engine's command line")
    settings = MatchSettings(tuple(engine), tuple(opponent), tuple(referee), args.komi, args.max_moves)
    try:
        outcomes = run(settings, args.games, args.out, args.parallel)
    except (GtpError, OSError) as exc:
        raise CommandError(f"the match stopped: {exc}; the games finished are kept in {args.out}") from None
    summary = tally(outcomes)
    engine_name = outcomes[0].black if outcomes[0].engine_color == "B" else outcomes[0].white
    opponent_name = outcomes[0].white if outcomes[0].engine_color == "B" else outcomes[0].black
    text = report(summary, engine_name, f"{opponent_name} ({args.opponent})")
    (args.out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    (args.out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0
