"""A small GTP controller for the tests: two engines in subprocesses play a game, and GNU Go,
one of them, referees every move of the other."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Debian installs GNU Go in /usr/games, which is not on every PATH.
GNUGO_PLACES = ("/usr/games/gnugo", "/usr/bin/gnugo")


def gnugo_path() -> str:
    found = shutil.which("gnugo") or next((p for p in GNUGO_PLACES if os.access(p, os.X_OK)), None)
    if found is None:
        raise AssertionError("GNU Go is not installed: `make system-packages` installs Debian's gnugo")
    return found


class GtpFailure(AssertionError):
    """An engine answered ``? ...`` where success was expected."""


class GtpProcess:
    def __init__(self, argv: list[str], name: str, *, cwd: Path | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )

    def ask(self, command: str) -> tuple[bool, str]:
        """Send one command; (success, the reply without its ``=``/``?``)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        lines: list[str] = []
        while True:
            line = self.process.stdout.readline()
            if line == "":
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"{self.name} ended while answering {command!r}: {stderr}")
            line = line.rstrip("\n")
            if line == "" and lines:
                break
            if line or lines:
                lines.append(line)
        head, text = lines[0][0], "\n".join([lines[0][1:].strip(), *lines[1:]]).strip()
        assert head in "=?", f"{self.name}: not a GTP reply to {command!r}: {lines}"
        return head == "=", text

    def send(self, command: str) -> str:
        ok, text = self.ask(command)
        if not ok:
            raise GtpFailure(f"{self.name} refused {command!r}: ? {text}")
        return text

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(AssertionError, OSError):
                self.ask("quit")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@dataclass
class Game:
    moves: list[tuple[str, str]] = field(default_factory=list)  # (colour "black"/"white", vertex)
    handicap: list[str] = field(default_factory=list)  # black's handicap stones
    checked: int = 0  # moves of ours GNU Go confirmed legal before they were played
    end: str = ""  # "two passes" or "<colour> resigned"
    score: str = ""


def play_game(
    ours: GtpProcess,
    gnugo: GtpProcess,
    our_colour: str,
    *,
    max_moves: int,
    handicap: int = 0,
    on_move: Callable[[Game], None] | None = None,
) -> Game:
    """A game from the empty board (or ``handicap`` fixed stones for black, white moving first)
    until two passes in a row or a resignation; ``on_move(game)`` after every move. Every move of
    ours is legal by GNU Go's ``is_legal`` before it is played."""
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
        vertex = mover.send(f"genmove {colour}").upper()
        if vertex == "RESIGN":
            game.end = f"{colour} resigned"
            break
        if mover is ours and vertex != "PASS":
            assert gnugo.send(f"is_legal {colour} {vertex}") == "1", f"GNU Go finds our {colour} {vertex} illegal"
            game.checked += 1
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
