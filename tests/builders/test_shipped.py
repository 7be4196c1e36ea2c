"""The policy network cnnserve ships: it loads, it is small, and it reproduces the accuracy its
provenance records on the held-out games committed beside it."""

from __future__ import annotations

import hashlib

from cnnserve.builders.go_training.ship import NAME, committed_scores
from cnnserve.builders.shipped import shipped

MAX_BYTES = 16 * 2**20


def test_the_shipped_policy_network_reproduces_its_recorded_held_out_accuracy() -> None:
    found = shipped(NAME)
    assert found is not None, "builders/trained/alphago_policy.pt and .json ship with cnnserve"
    assert found.weights.stat().st_size <= MAX_BYTES
    assert hashlib.sha256(found.weights.read_bytes()).hexdigest() == found.provenance["sha256"]
    committed = found.provenance["committed"]
    assert sorted(p.name for p in found.held_out.glob("*.sgf")) == sorted(committed["games"])
    scores, positions = committed_scores(found, found.options["k"])
    assert positions == committed["positions"] >= 300
    # The same float32 arithmetic on the same positions; another CPU's summation order could
    # only flip a near-tie, so at most one position may differ.
    assert abs(scores.top1 - committed["top1"]) * positions <= 1 + 1e-6
    assert abs(scores.top5 - committed["top5"]) * positions <= 1 + 1e-6
    # Far above chance (about 1 in 250 legal points): a trained network, not a random one.
    assert committed["top1"] > 0.25 and found.provenance["held_out"]["top1"] > 0.25
