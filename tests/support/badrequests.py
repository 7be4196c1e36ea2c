"""The bad V2 inference requests every front end must refuse, with the status and the message
each gets: one table, run over gRPC (tests/server/test_server.py) and over HTTP
(tests/server/rest/test_bad_requests.py), so the two cannot drift apart; and the HTTP status of
each gRPC status, for the tests that send the same bad request both ways."""

from __future__ import annotations

import numpy as np
import pytest

# (model, version, [(input name, shape, datatype)], gRPC status, part of the message)
BAD_REQUESTS = [
    ("nope", "", [("input", (1, 1, 32, 32), "FP32")], "NOT_FOUND", "model_name: unknown model 'nope'"),
    ("lenet5", "7", [("input", (1, 1, 32, 32), "FP32")], "NOT_FOUND",
     "model_version: 'lenet5' has no version '7'; version 1 is served"),
    ("lenet5", "", [("pixels", (1, 1, 32, 32), "FP32")], "INVALID_ARGUMENT",
     "inputs: unknown input 'pixels' for model 'lenet5'; expected ['input']"),
    ("lenet5", "", [("input", (1, 1, 32, 32), "FP64")], "INVALID_ARGUMENT",
     "input 'input': datatype FP64, model 'lenet5' expects FP32"),
    ("lenet5", "", [("input", (1, 32, 32), "FP32")], "INVALID_ARGUMENT",
     "input 'input': shape [1, 32, 32] has rank 3, expected 4: [batch, 1, 32, 32]"),
    ("lenet5", "", [("input", (1, 1, 28, 28), "FP32")], "INVALID_ARGUMENT",
     "input 'input': shape [1, 1, 28, 28], expected [batch, 1, 32, 32]"),
    ("lenet5", "", [("input", (257, 1, 32, 32), "FP32")], "INVALID_ARGUMENT",
     "inputs: batch of 257 exceeds max_batch_size 256 of model 'lenet5'"),
    ("lenet5", "", [("input", (0, 1, 32, 32), "FP32")], "INVALID_ARGUMENT", "inputs: empty batch"),
    ("broken", "", [("input", (1, 3, 32, 32), "FP32")], "UNAVAILABLE", "model 'broken' is not ready (failed: "),
]  # fmt: skip
IDS = ["unknown model", "unknown version", "unknown input", "wrong datatype", "wrong rank", "wrong shape",
       "over max_batch_size", "empty batch", "failed model"]  # fmt: skip
# Triton's HTTP status for each gRPC status (its HttpCodeFromError); a full queue, which Triton's
# HTTP front end cannot have, is 429.
HTTP_STATUS = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "UNAVAILABLE": 503, "RESOURCE_EXHAUSTED": 429}
bad_requests = pytest.mark.parametrize(("model", "version", "inputs", "code", "message"), BAD_REQUESTS, ids=IDS)


def zeros(shape: tuple[int, ...], datatype: str) -> np.ndarray:
    return np.zeros(shape, np.float64 if datatype == "FP64" else np.float32)
