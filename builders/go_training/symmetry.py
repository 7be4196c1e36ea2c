"""The eight symmetries of the square board (the dihedral group), on points and on planes.

Symmetry ``s`` maps point ``(row, col)`` by an optional transpose, then an optional flip of the
rows, then an optional flip of the columns: bits 0, 1 and 2 of ``s``. Symmetry 0 is the
identity. Every input plane is a property of a point that the rules do not tie to an
orientation, so the planes of a transformed position are the transformed planes.
"""

from __future__ import annotations

import numpy as np

from cnnserve.go.coords import POINTS, SIZE

COUNT = 8


def _mapping(s: int) -> np.ndarray:
    rows, cols = np.divmod(np.arange(POINTS), SIZE)
    if s & 1:
        rows, cols = cols, rows
    if s & 2:
        rows = SIZE - 1 - rows
    if s & 4:
        cols = SIZE - 1 - cols
    return (rows * SIZE + cols).astype(np.intp)


# _TO[s][p]: where symmetry s takes point p. _FROM[s][q]: the point that s takes to q.
_TO = np.stack([_mapping(s) for s in range(COUNT)])
_FROM = np.argsort(_TO, axis=1)


def point(s: int, p: int) -> int:
    """Where symmetry ``s`` takes point ``p``."""
    return int(_TO[s, p])


def points(s: int) -> np.ndarray:
    """Where symmetry ``s`` takes each point: ``points(s)[p]``, read-only."""
    view = _TO[s]
    view.flags.writeable = False
    return view


def planes(s: int, x: np.ndarray) -> np.ndarray:
    """Planes ``x`` (``(..., 19, 19)``) seen through symmetry ``s``: a new array with
    ``out[..., point(s, p)] == x[..., p]`` on the flattened board."""
    flat = x.reshape(*x.shape[:-2], POINTS)
    return flat[..., _FROM[s]].reshape(x.shape)
