"""A small GTP controller for the tests: two engines in subprocesses play a game, and GNU Go,
one of them, referees every move of the other; our engine can be asked for its analysis
(lz-analyze, kata-analyze, the genmove_analyze commands) during the game, as a GUI does."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnnserve.go.gtp_controller import GtpEngine, find_gnugo


def gnugo_path() -> str:
    found = find_gnugo()
    if found is None:
        raise AssertionError("GNU Go is not installed: `make system-packages` installs Debian's gnugo")
    return found


class GtpFailure(AssertionError):
    """An engine answered ``? ...`` where success was expected."""


class GtpProcess(GtpEngine):
    """The product's engine subprocess, read the way the tests want: failures as assertions, the
    engine's stderr kept for the message, analysis streams."""

    def __init__(self, argv: list[str], name: str, *, cwd: Path | None = None) -> None:
        super().__init__(argv, name, cwd=cwd, stderr=subprocess.PIPE)

    def write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def readline(self, command: str) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line == "":
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"{self.name} ended while answering {command!r}: {stderr}")
        return line.rstrip("\n")

    def ask(self, command: str) -> tuple[bool, str]:
        """Send one command; (success, the reply without its ``=``/``?``)."""
        self.write(command)
        return self.read_reply(command)

    def read_reply(self, command: str) -> tuple[bool, str]:
        """The reply to a command already sent (leading empty lines skipped)."""
        lines: list[str] = []
        while True:
            line = self.readline(command)
            if line == "" and lines:
                break
            if line or lines:
                lines.append(line)
        head, text = lines[0][0], "\n".join([lines[0][1:].strip(), *lines[1:]]).strip()
        assert head in "=?", f"{self.name}: not a GTP reply to {command!r}: {lines}"
        return head == "=", text

    def start_analysis(self, command: str, infos: int = 2) -> list[str]:
        """Send lz-analyze or kata-analyze; read the ``=`` that opens the response and the first
        ``infos`` info lines (which the engine sends every interval until told to stop)."""
        self.write(command)
        head = self.readline(command)
        assert head.startswith("="), f"{self.name} refused {command!r}: {head}"
        lines = [self.readline(command) for _ in range(infos)]
        assert all(line.startswith("info move ") for line in lines), lines
        return lines

    def stop_analysis(self, line: str = "") -> list[str]:
        """Stop a running analysis with ``line`` (an empty line, or the next command, whose reply
        :meth:`read_reply` then reads); the info lines sent meanwhile, up to the blank line that
        ends the analysis response."""
        self.write(line)
        lines = []
        while (text := self.readline(line or "the empty line")) != "":
            assert text.startswith("info move "), f"{self.name}: not an info line: {text!r}"
            lines.append(text)
        return lines

    def send(self, command: str) -> str:
        ok, text = self.ask(command)
        if not ok:
            raise GtpFailure(f"{self.name} refused {command!r}: ? {text}")
        return text


VERTEX = re.compile(r"[A-HJ-Ta-hj-t](1[0-9]|[1-9])|pass")


def parse_infos(line: str, number: Callable[[str], float]) -> list[dict[str, object]]:
    """One output line of infos, the way the GUIs read it: each ``info`` starts a move, then
    key-value pairs (values through ``number``, except the move), where ``pv`` takes the vertices
    that follow it (KataGo may put pvVisits after them). Field order is free; the keys come back
    in the order seen."""
    words = line.split()
    infos: list[dict[str, object]] = []
    i = 0
    while i < len(words):
        assert words[i] == "info", f"expected 'info' at word {i} of {line!r}"
        i += 1
        info: dict[str, object] = {}
        while i < len(words) and words[i] != "info":
            key = words[i]
            assert key not in info, f"{key} twice in {line!r}"
            if key == "pv":
                i += 1
                pv = []
                while i < len(words) and VERTEX.fullmatch(words[i]):
                    pv.append(words[i])
                    i += 1
                info["pv"] = pv
                continue
            value = words[i + 1]
            info[key] = value if key == "move" else number(value)
            i += 2
        assert "move" in info and "pv" in info, info
        infos.append(info)
    return infos


def lz_int(text: str) -> int:
    """Leela Zero's numbers: integers (win rate and prior times 10000)."""
    assert text.lstrip("-").isdigit(), f"Leela Zero prints integers, not {text!r}"
    return int(text)


def kata_float(text: str) -> float:
    """KataGo's numbers: floats (anything else raises)."""
    return float(text)


@dataclass
class Game:
    moves: list[tuple[str, str]] = field(default_factory=list)  # (colour "black"/"white", vertex)
    handicap: list[str] = field(default_factory=list)  # black's handicap stones
    checked: int = 0  # moves of ours GNU Go confirmed legal before they were played
    end: str = ""  # "two passes" or "<colour> resigned"
    score: str = ""
    analyses: int = 0  # lz-analyze / kata-analyze run on our engine while GNU Go chose its move
    analysed_moves: int = 0  # our moves played by lz-genmove_analyze / kata-genmove_analyze


def play_game(
    ours: GtpProcess,
    gnugo: GtpProcess,
    our_colour: str,
    *,
    max_moves: int,
    handicap: int = 0,
    on_move: Callable[[Game], None] | None = None,
    analyse_every: int = 0,
) -> Game:
    """A game from the empty board (or ``handicap`` fixed stones for black, white moving first)
    until two passes in a row or a resignation; ``on_move(game)`` after every move. Every move of
    ours is legal by GNU Go's ``is_legal`` before it is played.

    With ``analyse_every`` N, as a GUI would: every N moves our engine analyses GNU Go's position
    (lz-analyze and kata-analyze in turn, every 10 centiseconds) while GNU Go chooses its move,
    and is stopped by the ``play`` of GNU Go's move or by an empty line (two of each in turn); and every
    third move of ours is asked for with lz-genmove_analyze or kata-genmove_analyze."""
    game = Game()
    for engine in (ours, gnugo):
        engine.send("boardsize 19")
        engine.send("clear_board")
        engine.send("komi 0.5" if handicap else "komi 7.5")
    if handicap:
        stones = {engine.name: engine.send(f"fixed_handicap {handicap}") for engine in (ours, gnugo)}
        placed = {frozenset(vertices.upper().split()) for vertices in stones.values()}
        assert len(placed) == 1, f"the engines place the handicap differently: {stones}"
        game.handicap = stones[gnugo.name].split()
    colour = "white" if handicap else "black"
    passes = 0
    while len(game.moves) < max_moves:
        mover, other = (ours, gnugo) if colour == our_colour else (gnugo, ours)
        number = len(game.moves)
        analysing = bool(analyse_every) and mover is gnugo and number % analyse_every == 0
        stop_with_play = (game.analyses // 2) % 2 == 0  # lz, kata with the play; lz, kata with ""; ...
        if analysing:
            command = ("lz-analyze", "kata-analyze")[game.analyses % 2]
            infos = ours.start_analysis(f"{command} {colour} 10", infos=1)  # more may come meanwhile
            best = parse_infos(infos[0], lz_int if command == "lz-analyze" else kata_float)[0]["move"]
            assert gnugo.send(f"is_legal {colour} {best}") == "1", f"GNU Go finds {colour} {best} illegal"
            game.analyses += 1
        if analyse_every and mover is ours and sum(c == colour for c, _ in game.moves) % 3 == 0:
            command = ("lz-genmove_analyze", "kata-genmove_analyze")[game.analysed_moves % 2]
            *infos, play = mover.send(f"{command} {colour} 10").split("\n")
            assert play.startswith("play ") and all(i.startswith("info move ") for i in infos), (infos, play)
            vertex = play.split()[1].upper()
            game.analysed_moves += 1
        else:
            vertex = mover.send(f"genmove {colour}").upper()
        played = False
        if analysing:
            if stop_with_play and vertex != "RESIGN":  # stopped by the next command: the play
                ours.stop_analysis(f"play {colour} {vertex}")
                ok, text = ours.read_reply("play")
                assert ok, f"our engine refused GNU Go's {colour} {vertex}: {text}"
                played = True
            else:
                ours.stop_analysis("")
        if vertex == "RESIGN":
            game.end = f"{colour} resigned"
            break
        if mover is ours and vertex != "PASS":
            assert gnugo.send(f"is_legal {colour} {vertex}") == "1", f"GNU Go finds our {colour} {vertex} illegal"
            game.checked += 1
        if not played:
            other.send(f"play {colour} {vertex}")  # our engine must accept every move GNU Go makes
        game.moves.append((colour, vertex))
        if on_move is not None:
            on_move(game)
        passes = passes + 1 if vertex == "PASS" else 0
        if passes == 2:
            game.end = "two passes"
            break
        colour = "white" if colour == "black" else "black"
    game.score = gnugo.send("final_score") if game.end else ""
    return game
