"""The held-out curve of a training run as a PNG, when matplotlib is installed.

The export extra does not need matplotlib; training without it writes the history alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHART = "history.png"


def draw_chart(history: list[dict[str, Any]], path: Path) -> bool:
    """Held-out top-1 and top-5 against positions seen; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return False
    seen = [line["positions"] for line in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(seen, [line["held_out_top1"] * 100 for line in history], marker="o", label="held-out top-1")
    ax.plot(seen, [line["held_out_top5"] * 100 for line in history], marker="o", label="held-out top-5")
    ax.plot(seen, [line["train_top1"] * 100 for line in history], linestyle="--", label="training top-1 (recent)")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xlabel("positions seen")
    ax.set_ylabel("moves predicted (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("alphago_policy on held-out games")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
