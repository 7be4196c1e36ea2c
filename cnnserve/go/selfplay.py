"""``cnnserve go-data``: games of GNU Go against itself, written as SGF, to train the policy network on.

No game collection can be downloaded where cnnserve is built, but an expert engine can be run. Each
game has a seed: GNU Go's random seed is set to it (``set_random_seed``), and its first
``--opening`` moves are drawn, with a generator seeded by it, from GNU Go's own candidates weighted
by their values, so that no two games repeat and the same seed always plays the same game. After the
opening GNU Go plays its own move (``genmove``) until both pass or one resigns; ``final_score``
gives the result (GNU Go's estimate, for a game cut at ``--max-moves``).

The folder grows: a game is written once, as ``game-SEED.sgf`` (to a temporary name, then renamed),
and a run plays only the seeds whose file is missing, so an interrupted run resumes where it stopped.
``manifest.json`` counts what the folder holds. Each process plays with a GNU Go of its own.

The root node names the engine, its version, level and the seed (``PB``, ``PW``, ``GC``). With
``--candidates``, every move's node also holds GNU Go's candidate moves and their values before it
was played, in the private property ``XC`` (``XC[pd:75.0][dp:74.0]``): a richer target than the one
move played. Records a user brings (a pro collection, KGS archives) are read by the training step
from any folder of ``.sgf`` files; this command only makes them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnserve.errors import CommandError
from cnnserve.go import sgf
from cnnserve.go.gtp_controller import GtpEngine, GtpError, find_gnugo

COLUMNS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"  # GTP's column letters, without I
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SelfPlay:
    """How the games are played: the same settings and seed always give the same game."""

    level: int = 0
    size: int = 19
    komi: float = 7.5
    opening: int = 6  # moves drawn from GNU Go's candidates before it plays its own
    max_moves: int = 500  # a game is cut here (scored as it stands)
    candidates: bool = False  # record GNU Go's candidates and values at every move


@dataclass
class Game:
    seed: int
    settings: SelfPlay
    engine: str  # "GNU Go 3.8"
    moves: list[tuple[str, str]] = field(default_factory=list)  # ("B", "Q16"), ("W", "pass")
    candidates: list[list[tuple[str, float]]] = field(default_factory=list)  # per move, when recorded
    result: str = "?"
    cut: bool = False  # stopped at max_moves, the result estimated


def vertex_to_sgf(vertex: str, size: int) -> str:
    """A GTP vertex as an SGF point on a ``size`` board (``""`` for a pass)."""
    if vertex.lower() == "pass":
        return ""
    col = COLUMNS.index(vertex[0].upper())
    row = size - int(vertex[1:])
    return chr(ord("a") + col) + chr(ord("a") + row)


def _candidates(text: str) -> list[tuple[str, float]]:
    """GNU Go's ``top_moves_*`` reply: ``Q16 75.00 Q3 74.01 ...``."""
    words = text.split()
    return [(words[i], float(words[i + 1])) for i in range(0, len(words) - 1, 2)]


def start_gnugo(gnugo: str, level: int) -> GtpEngine:
    return GtpEngine([gnugo, "--mode", "gtp", "--level", str(level)], name="GNU Go")


def play_game(engine: GtpEngine, seed: int, settings: SelfPlay) -> Game:
    """One game of ``engine`` against itself from the empty board."""
    engine.send(f"boardsize {settings.size}")
    engine.send("clear_board")
    engine.send(f"komi {settings.komi:g}")
    engine.send(f"set_random_seed {seed}")
    game = Game(seed, settings, f"{engine.send('name')} {engine.send('version')}")
    draw = random.Random(seed)
    color, passes = "B", 0
    while len(game.moves) < settings.max_moves and passes < 2:
        gtp_color = "black" if color == "B" else "white"
        opening = len(game.moves) < settings.opening
        tops = _candidates(engine.send(f"top_moves_{gtp_color}")) if opening or settings.candidates else []
        if opening and tops:
            vertex = draw.choices([v for v, _ in tops], weights=[max(value, 1e-3) for _, value in tops])[0]
            engine.send(f"play {gtp_color} {vertex}")
        else:
            vertex = engine.send(f"genmove {gtp_color}")
        if vertex.lower() == "resign":
            game.result = f"{'W' if color == 'B' else 'B'}+R"
            return game
        passes = passes + 1 if vertex.lower() == "pass" else 0
        game.moves.append((color, vertex.upper() if vertex.lower() != "pass" else "pass"))
        if settings.candidates:
            game.candidates.append(tops)
        color = "W" if color == "B" else "B"
    if passes < 2:
        # Cut at --max-moves: GNU Go's final_score would analyse the unfinished board's dead
        # stones for seconds; its estimate is enough for a cut game, and the root says it was cut.
        game.cut = True
        score = engine.send("estimate_score").split()[0]
    else:
        score = engine.send("final_score")
    game.result = "0" if score in ("0", "Jigo") else score
    return game


def to_sgf(game: Game) -> str:
    s = game.settings
    player = f"{game.engine} level {s.level}"
    note = f"{game.engine}, level {s.level}, seed {game.seed}, opening {s.opening} moves from its candidates"
    if game.cut:
        note += f"; cut at {s.max_moves} moves, result estimated"
    # GNU Go counts by Japanese rules unless told otherwise, and it is not told.
    root = (
        f"GM[1]FF[4]CA[UTF-8]AP[cnnserve go-data]SZ[{s.size}]KM[{s.komi:g}]RU[Japanese]"
        f"PB[{player}]PW[{player}]RE[{game.result}]GN[seed {game.seed}]GC[{note}]"
    )
    nodes = []
    for i, (color, vertex) in enumerate(game.moves):
        node = f";{color}[{vertex_to_sgf(vertex, s.size)}]"
        if s.candidates and game.candidates[i]:
            node += "XC" + "".join(f"[{vertex_to_sgf(v, s.size)}:{value:g}]" for v, value in game.candidates[i])
        nodes.append(node)
    return f"(;{root}\n" + "\n".join(nodes) + ")\n"


def game_path(folder: Path, seed: int) -> Path:
    return folder / f"game-{seed:08d}.sgf"


# -- a process's own engine (concurrent.futures runs each game in one of its worker processes) --

_engine: GtpEngine | None = None


def _start_worker(gnugo: str, level: int) -> None:
    global _engine
    _engine = start_gnugo(gnugo, level)


def _play_and_write(folder: Path, seed: int, settings: SelfPlay) -> int:
    """Play seed's game with this process's engine and write it; the number of its moves."""
    assert _engine is not None
    game = play_game(_engine, seed, settings)
    path = game_path(folder, seed)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(to_sgf(game), encoding="utf-8")
    partial.replace(path)
    return len(game.moves)


def write_manifest(folder: Path) -> dict[str, object]:
    """Count the games and positions the folder holds (whatever wrote them) into manifest.json."""
    games = positions = 0
    engines: dict[str, int] = {}
    for path in sorted(folder.glob("*.sgf")):
        record = sgf.parse(path.read_text(encoding="utf-8", errors="replace"))
        games += 1
        positions += sum(1 for node in record.nodes[1:] if "B" in node or "W" in node)
        player = record.root.get("PB", ["unknown"])[0]
        engines[player] = engines.get(player, 0) + 1
    manifest: dict[str, object] = {"games": games, "positions": positions, "players": engines}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def run(
    folder: Path, seeds: range, settings: SelfPlay, *, gnugo: str, workers: int, progress: bool = True
) -> dict[str, object]:
    """Play every seed whose game the folder lacks, ``workers`` at a time; the manifest after."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = [seed for seed in seeds if not game_path(folder, seed).exists()]
    started = time.monotonic()
    done = positions = 0
    if todo:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), initializer=_start_worker, initargs=(gnugo, settings.level)
        ) as pool:
            futures = [pool.submit(_play_and_write, folder, seed, settings) for seed in todo]
            for future in concurrent.futures.as_completed(futures):
                try:
                    positions += future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    raise GtpError(
                        f"a GNU Go process ({gnugo}) could not start or died; the games written are kept"
                    ) from None
                done += 1
                if progress:
                    _draw(done, len(todo), positions, time.monotonic() - started)
        if progress:
            print(file=sys.stderr)
    return write_manifest(folder)


def _draw(done: int, total: int, positions: int, elapsed: float) -> None:
    bar = "#" * int(30 * done / total)
    rate = f"{done / elapsed * 3600:,.0f} games/h, {positions / elapsed:,.1f} positions/s" if elapsed else ""
    print(f"\r[{bar:<30}] {done}/{total} games  {rate}   ", end="", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="where the games go (it grows; games already there are kept)")
    parser.add_argument("--games", type=int, default=100, help="games the folder should hold for these seeds")
    parser.add_argument("--first-seed", type=int, default=1, help="the seed of the first game; game i has seed first+i")
    parser.add_argument("--level", type=int, default=0, help="GNU Go's level, 0 to 10 (default 0, its fastest)")
    parser.add_argument("--size", type=int, default=19, help="board size (the policy network is 19x19)")
    parser.add_argument("--komi", type=float, default=7.5)
    parser.add_argument("--opening", type=int, default=SelfPlay.opening,
                        help="first moves drawn from GNU Go's candidates by the seed, so games differ")  # fmt: skip
    parser.add_argument("--max-moves", type=int, default=SelfPlay.max_moves, help="a game is cut (and scored) here")
    parser.add_argument("--candidates", action="store_true",
                        help="record GNU Go's candidate moves and values at every move (slower)")  # fmt: skip
    parser.add_argument(
        "--workers", default="auto", help="games at once, each with its own GNU Go (auto: one per core)"
    )
    parser.add_argument("--gnugo", default=None, help="GNU Go's executable (default: on PATH or /usr/games/gnugo)")


def main(args: argparse.Namespace) -> int:
    gnugo = args.gnugo or find_gnugo()
    if gnugo is None:
        raise CommandError("GNU Go is not installed (Debian: apt-get install gnugo); or give its path with --gnugo")
    if not os.access(gnugo, os.X_OK):
        raise CommandError(f"--gnugo {gnugo}: not an executable file")
    if args.games < 0 or not 0 <= args.level <= 10 or not 5 <= args.size <= 25 or args.max_moves < 1:
        raise CommandError("--games >= 0, --level 0 to 10, --size 5 to 25 and --max-moves >= 1, please")
    try:
        workers = (os.cpu_count() or 1) if args.workers == "auto" else int(args.workers)
    except ValueError:
        raise CommandError(f"--workers: expected a number or auto, got {args.workers!r}") from None
    settings = SelfPlay(args.level, args.size, args.komi, args.opening, args.max_moves, args.candidates)
    try:
        manifest = run(args.folder, range(args.first_seed, args.first_seed + args.games), settings,
                       gnugo=gnugo, workers=max(1, workers))  # fmt: skip
    except GtpError as exc:
        raise CommandError(str(exc)) from None
    print(f"{args.folder}: {manifest['games']} games, {manifest['positions']} positions")
    return 0
