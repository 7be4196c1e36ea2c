"""``cnnserve policy --heatmap`` against a real server: every legal point of the board it prints
shows its probability as a digit, tenths of the best move's; illegal empty points stay '.'."""

from __future__ import annotations

import json
from pathlib import Path

from harness import Served, cli

from cnnserve.go.coords import COLUMNS, POINTS, SIZE

SGF = Path(__file__).resolve().parents[1] / "data" / "gnugo-selfplay.sgf"


def board_cells(stdout: str) -> list[str]:
    """The 361 characters of the printed board, row 19 first."""
    lines = stdout.splitlines()
    top = lines.index("   " + " ".join(COLUMNS))
    rows = lines[top + 1 : top + 1 + SIZE]
    assert [row.split()[0] for row in rows] == [str(n) for n in range(SIZE, 0, -1)]
    cells = [cell for row in rows for cell in row.split()[1 : 1 + SIZE]]
    assert len(cells) == POINTS
    return cells


def check_heat(stdout: str, reply: dict[str, object]) -> list[str]:
    probabilities = reply["probabilities"]
    assert isinstance(probabilities, list)
    best = max(probabilities)
    cells = board_cells(stdout)
    stones = "".join(str(reply["board"]).split())
    for p, (cell, probability) in enumerate(zip(cells, probabilities, strict=True)):
        if stones[p] != ".":
            assert cell == stones[p]  # X and O as they are
        elif probability > 0:
            assert cell == str(min(9, int(10 * probability / best))), (p, cell, probability)
        else:
            assert cell == ".", (p, cell)  # an empty point where the move is illegal
    assert "9" in cells
    return cells


def test_policy_heatmap_shows_every_legal_points_probability(server: Served, tmp_path: Path) -> None:
    at = ["--server", server.grpc_address]
    done = cli("policy", "--sgf", str(SGF), "--move", "30", "--top", "3", "--heatmap", *at)
    assert done.returncode == 0, done.stderr
    reply = json.loads(cli("policy", "--sgf", str(SGF), "--move", "30", "--top", "3", "--json", *at).stdout)
    cells = check_heat(done.stdout, reply)
    legend = next(line for line in done.stdout.splitlines() if line.startswith("heatmap: "))
    best = reply["top_moves"][0]
    assert f"({best['vertex']}, {best['probability']:.5f})" in legend and "0 = under 10%" in legend
    table = done.stdout.splitlines()[done.stdout.splitlines().index("heat  move  probability") + 2 :]
    assert [row.split()[1] for row in table] == [m["vertex"] for m in reply["top_moves"]]
    for row in table:  # each listed move's heat is the digit on the board at its vertex
        heat, vertex = row.split()[:2]
        p = (SIZE - int(vertex[1:])) * SIZE + COLUMNS.index(vertex[0])
        assert cells[p] == heat

    # --top 0: the heat map alone, no table (and no claim that there is no legal move).
    done = cli("policy", "--sgf", str(SGF), "--move", "30", "--top", "0", "--heatmap", *at)
    assert done.returncode == 0 and done.stdout.splitlines()[-1].startswith("heatmap: "), done.stdout[-300:]
    assert check_heat(done.stdout, reply) == cells

    # White may not play at A19 (suicide): an empty point without a digit.
    board = tmp_path / "board.txt"
    board.write_text("\n".join([".X" + "." * 17, "X" + "." * 18] + ["." * 19] * 17) + "\n")
    args = ["--board", str(board), "--to-move", "white", *at]
    done = cli("policy", "--heatmap", *args)
    assert done.returncode == 0, done.stderr
    cells = check_heat(done.stdout, json.loads(cli("policy", "--json", *args).stdout))
    assert cells[0] == "." and "where white may not play" in done.stdout


def test_policy_help_explains_the_heatmap() -> None:
    done = cli("policy", "--help")
    assert done.returncode == 0 and "--heatmap" in done.stdout
    assert "under 10%" in " ".join(done.stdout.split())
