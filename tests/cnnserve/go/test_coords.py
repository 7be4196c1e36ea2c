import pytest

from cnnserve.go.coords import DIAGONALS, NEIGHBOURS, CoordinateError, from_gtp, from_sgf, point, to_gtp, to_sgf


def test_gtp_names_skip_i_and_count_rows_from_the_bottom() -> None:
    assert to_gtp(point(0, 0)) == "A19"
    assert to_gtp(point(18, 0)) == "A1"
    assert to_gtp(point(18, 8)) == "J1"  # the ninth column is J: there is no I
    assert to_gtp(point(0, 18)) == "T19"
    assert to_gtp(None) == "pass"


@pytest.mark.parametrize("p", [0, 18, 60, 180, 342, 360])
def test_gtp_and_sgf_names_round_trip(p: int) -> None:
    assert from_gtp(to_gtp(p)) == p
    assert from_gtp(to_gtp(p).lower()) == p
    assert from_sgf(to_sgf(p)) == p


def test_sgf_points_are_column_then_row_from_the_top() -> None:
    assert from_sgf("aa") == point(0, 0)
    assert from_sgf("sa") == point(0, 18)
    assert from_sgf("dp") == from_gtp("D4")
    assert from_sgf("") is None and from_sgf("tt") is None
    assert from_gtp("PASS") is None


@pytest.mark.parametrize("bad", ["I5", "A20", "A0", "Z3", "", "4D", "A"])
def test_bad_gtp_vertices_are_refused(bad: str) -> None:
    with pytest.raises(CoordinateError):
        from_gtp(bad)


@pytest.mark.parametrize("bad", ["a", "zz", "at", "abc"])
def test_bad_sgf_points_are_refused(bad: str) -> None:
    with pytest.raises(CoordinateError):
        from_sgf(bad)


def test_neighbours_and_diagonals_stop_at_the_edge() -> None:
    assert sorted(NEIGHBOURS[0]) == [1, 19]
    assert len(NEIGHBOURS[point(9, 9)]) == 4
    assert len(NEIGHBOURS[point(0, 9)]) == 3
    assert DIAGONALS[0] == (point(1, 1),)
    assert len(DIAGONALS[point(9, 9)]) == 4
