"""Triton's classification extension: top-k strings as Triton writes them, read by tritonclient."""

from __future__ import annotations

import numpy as np
import pytest
from wire import tritonclient_reads

from cnnserve import codec
from cnnserve.server import errors
from cnnserve.server.classification import top_classes


def test_classification_is_top_k_in_tritons_format() -> None:
    scores = np.array([[0.1, 12.3456, -1.0, 2.25], [3.0, 0.0, 1.0, 2.0]], dtype=np.float32)
    top = top_classes(scores, 2, ["cat", "dog", "bird", "fish"])
    assert top.tolist() == [
        [b"12.345600:1:dog", b"2.250000:3:fish"],
        [b"3.000000:0:cat", b"2.000000:3:fish"],
    ]


def test_classification_without_labels_and_k_past_the_classes() -> None:
    scores = np.array([[0.5, 1e-7, -2.0]], dtype=np.float64)
    assert top_classes(scores, 5).tolist() == [[b"0.500000:0", b"0.000000:1", b"-2.000000:2"]]


def test_classification_labels_only_where_there_is_one() -> None:
    # Triton leaves the label off where the labels file has none for that class.
    top = top_classes(np.array([[1.0, 3.0, 2.0]]), 3, ["a", ""])
    assert top.tolist() == [[b"3.000000:1", b"2.000000:2", b"1.000000:0:a"]]


def test_classification_ties_keep_index_order_and_nan_comes_last() -> None:
    scores = np.array([[1.0, np.nan, 2.0, 2.0, 1.0]], dtype=np.float32)
    indices = [int(item.split(b":")[1]) for item in top_classes(scores, 5)[0]]
    assert indices == [2, 3, 0, 4, 1]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint64])
def test_classification_of_integer_scores(dtype: type[np.integer]) -> None:
    info = np.iinfo(dtype)
    scores: np.ndarray = np.array([[0, info.max, 7, info.max, info.min]], dtype=dtype)
    top = top_classes(scores, 4)
    assert top.tolist() == [[f"{info.max}:1".encode(), f"{info.max}:3".encode(), b"7:2", b"0:0"]]


def test_classification_read_by_tritonclient() -> None:
    scores = np.array([[0.25, 0.75], [0.9, 0.1]], dtype=np.float32)
    tensor, raw = codec.encode_output("probs", top_classes(scores, 1, ["no", "yes"]))
    assert tensor.datatype == "BYTES" and list(tensor.shape) == [2, 1]
    read = tritonclient_reads(tensor, raw)
    assert [item.decode().split(":") for item in read[:, 0]] == [["0.750000", "1", "yes"], ["0.900000", "0", "no"]]


@pytest.mark.parametrize(
    ("scores", "k", "message"),
    [
        (np.zeros(3), 1, "classification needs scores shaped [batch, classes], got [3]"),
        (np.zeros((1, 3), bool), 1, "classification needs numeric scores, got dtype bool"),
        (np.zeros((1, 3)), 0, "classification needs a class count >= 1, got 0"),
    ],
)
def test_classification_refusals(scores: np.ndarray, k: int, message: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        top_classes(scores, k)
    assert info.value.message == message
