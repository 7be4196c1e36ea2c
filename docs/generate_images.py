"""The pictures of the documentation that come from the shipped Go network.

    python docs/generate_images.py      # what `make images` runs (needs the export extra and matplotlib)

- ``images/alphago_policy-training.png``: the held-out curve of the training run behind the
  shipped weights, from their provenance (``builders/trained/alphago_policy.json``);
- ``images/alphago_policy-heatmap.png``: the shipped network's move probabilities in the opening
  of a GNU Go game (``tests/data/gnugo-selfplay.sgf``), drawn on the board.

Pictures are not compared byte for byte in the tests (their pixels follow matplotlib's version);
run this again when the shipped weights change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
GAME = ROOT / "tests" / "data" / "gnugo-selfplay.sgf"
MOVE = 20  # an opening: the corners taken, the first approaches played


def training_chart() -> Path:
    from cnnserve.builders.go_training.chart import draw_chart
    from cnnserve.builders.shipped import shipped

    found = shipped("alphago_policy")
    assert found is not None, "no shipped alphago_policy weights"
    path = IMAGES / "alphago_policy-training.png"
    draw_chart(found.provenance["history"], path)
    return path


def probabilities(record: str, move: int) -> tuple[object, np.ndarray]:
    """The position after ``move`` moves of ``record`` and the shipped network's probability for
    each of its 361 points, illegal points at zero and the rest summing to one (as Policy answers)."""
    import torch

    from cnnserve.builders.alphago import alphago_policy
    from cnnserve.builders.shipped import shipped
    from cnnserve.go import features, position

    found = shipped("alphago_policy")
    assert found is not None, "no shipped alphago_policy weights"
    model = alphago_policy(k=found.options["k"]).eval()
    found.load_into(model)
    at = position.from_sgf(record, move)
    planes = features.planes(at.board, at.to_move)
    with torch.inference_mode():
        p = model(torch.from_numpy(planes[np.newaxis].astype(np.float32)))[0].numpy().astype(np.float64)
    legal = np.zeros_like(p)
    legal[at.board.legal_points(at.to_move)] = 1.0
    p *= legal
    return at, p / p.sum()


def heatmap() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnserve.go.board import BLACK, COLOR_NAMES, WHITE
    from cnnserve.go.coords import COLUMNS, SIZE, to_gtp

    at, p = probabilities(GAME.read_text(encoding="utf-8"), MOVE)
    board = at.board  # type: ignore[attr-defined]
    fig, ax = plt.subplots(figsize=(6.4, 6.4), dpi=110)
    ax.set_facecolor("#dcb35c")
    for i in range(SIZE):
        ax.plot([0, SIZE - 1], [i, i], color="black", linewidth=0.6, zorder=1)
        ax.plot([i, i], [0, SIZE - 1], color="black", linewidth=0.6, zorder=1)
    for row in (3, 9, 15):
        for col in (3, 9, 15):
            ax.plot(col, SIZE - 1 - row, "o", color="black", markersize=3, zorder=1)
    best = p.max()
    for point in range(SIZE * SIZE):
        row, col = divmod(point, SIZE)
        x, y = col, SIZE - 1 - row
        stone = board.stones[point]
        if stone in (BLACK, WHITE):
            ax.add_patch(plt.Circle((x, y), 0.47, facecolor="black" if stone == BLACK else "white",
                                    edgecolor="black", linewidth=0.8, zorder=3))  # fmt: skip
        elif p[point] >= 0.002:
            share = p[point] / best
            ax.add_patch(plt.Rectangle((x - 0.45, y - 0.45), 0.9, 0.9, color=plt.cm.inferno(0.25 + 0.7 * share),
                                       alpha=0.35 + 0.6 * share, zorder=2))  # fmt: skip
            if p[point] >= 0.02:
                ax.text(x, y, f"{p[point]:.0%}", ha="center", va="center", fontsize=7, color="white", zorder=4)
    ax.set_xticks(range(SIZE), list(COLUMNS))
    ax.set_yticks(range(SIZE), [str(i + 1) for i in range(SIZE)])
    ax.tick_params(length=0, labelsize=7)
    ax.set_xlim(-0.7, SIZE - 0.3)
    ax.set_ylim(-0.7, SIZE - 0.3)
    ax.set_aspect("equal")
    top = np.argsort(p)[::-1][:3]
    ax.set_title(
        f"{COLOR_NAMES[at.to_move]} to move after {MOVE} moves: "  # type: ignore[attr-defined]
        + ", ".join(f"{to_gtp(int(q))} {p[q]:.0%}" for q in top),
        fontsize=9,
    )
    fig.tight_layout()
    path = IMAGES / "alphago_policy-heatmap.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> int:
    IMAGES.mkdir(exist_ok=True)
    for path in (training_chart(), heatmap()):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
