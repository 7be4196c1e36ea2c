"""Triton's classification extension: an output's scores replaced by its top classes as
``"score:index:label"`` strings, when a request asks for ``class_count`` (the ``classification``
parameter of a requested output). The front ends call it; the data plane never sees it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnserve.server import errors


def top_classes(scores: np.ndarray, k: int, labels: Sequence[str] = ()) -> np.ndarray:
    """The top ``k`` classes of each row of ``scores`` (N, C), as Triton reports them: an (N, min(k, C))
    BYTES array of ``b"score:index:label"``, or ``b"score:index"`` where the class has no label.

    Highest score first; equal scores keep index order, NaN comes last. The score is written as
    Triton's ``std::to_string`` writes it: floats with six decimals (``"12.345600"``), integers
    plainly (``"3"``).
    """
    if scores.ndim != 2:
        raise errors.InvalidArgument(f"classification needs scores shaped [batch, classes], got {list(scores.shape)}")
    if scores.dtype.kind not in "iuf":
        raise errors.InvalidArgument(f"classification needs numeric scores, got dtype {scores.dtype}")
    if k < 1:
        raise errors.InvalidArgument(f"classification needs a class count >= 1, got {k}")
    top = _descending(scores)[:, :k]
    out = np.empty(top.shape, dtype=np.object_)
    for row, indices in enumerate(top):
        for col, index in enumerate(indices.tolist()):
            item = f"{_score_text(scores[row, index].item())}:{index}"
            if index < len(labels) and labels[index]:
                item += f":{labels[index]}"
            out[row, col] = item.encode("utf-8")
    return out


def _descending(scores: np.ndarray) -> np.ndarray:
    """Column indices of each row by descending score, ties by ascending index, NaN last."""
    if scores.dtype.kind == "f":
        return np.argsort(-scores, axis=1, kind="stable")  # argsort puts NaN (and -NaN) last
    # Integers: negating would wrap unsigned values, so sort the mirrored row ascending, stably,
    # and read it backwards; ties then come out in ascending index order.
    mirrored = np.argsort(scores[:, ::-1], axis=1, kind="stable")[:, ::-1]
    return scores.shape[1] - 1 - mirrored


def _score_text(value: float | int) -> str:
    # std::to_string: "%f" for floating point, "%d" for integers.
    return f"{value:f}" if isinstance(value, float) else str(value)
