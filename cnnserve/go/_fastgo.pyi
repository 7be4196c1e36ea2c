# Types of the C extension cnnserve/go/_fastgo.c (see its docstrings).
from _typeshed import ReadableBuffer as Buffer
from _typeshed import WriteableBuffer

from cnnserve.go.board import Move

PLANES: int
MAX_DEPTH: int
MAX_PLAYS: int

def illegal(stones: Buffer, color: int, point: int, ko_point: int, /) -> int: ...
def play(
    stones: WriteableBuffer, placed: WriteableBuffer, color: int, point: int, move_index: int, ko_point: int, /
) -> int | tuple[list[int], int]: ...
def play_many(
    stones: WriteableBuffer,
    placed: WriteableBuffer,
    moves: list[Move],
    first_index: int,
    ko_point: int,
    ko_color: int,
    /,
) -> tuple[int, int, int, int, int, int]: ...
def planes(
    stones: Buffer,
    placed: Buffer,
    moves: int,
    ko_point: int,
    ko_color: int,
    to_move: int,
    out: object,
    /,  # a writable float32 buffer: numpy arrays too
) -> None: ...
def ladder_capture(
    stones: Buffer, ko_point: int, ko_color: int, color: int, point: int, prey: int, /, *limits: int
) -> bool: ...
def ladder_escape(
    stones: Buffer, ko_point: int, ko_color: int, color: int, point: int, prey: int, /, *limits: int
) -> bool: ...
