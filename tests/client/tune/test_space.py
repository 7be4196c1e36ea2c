"""The space tune sweeps: its points, a point's neighbours, and the flags that serve a point."""

from __future__ import annotations

from dataclasses import replace

from cnnserve.client.tune.space import Point, Space, powers_of_two

SPACE = Space(max_batch_size=(1, 8, 64), preferred=("export", "max", "none"), max_queue_delay_us=(0, 2000),
              instances=(1, 2), workers=(1, 2), intra_op_threads=(0, 1, 2), batch_shapes=("auto",),
              cores=2)  # fmt: skip
START = Point(64, "export", 2000, 1, 1, 0, "auto")


def test_points_keep_workers_times_threads_within_the_cores() -> None:
    points = list(SPACE.points())
    assert len(points) == SPACE.size() == len(set(points))
    assert all(p.workers * max(p.intra_op_threads, 1) <= 2 for p in points)
    assert Point(8, "max", 0, 1, 2, 1, "auto") in points
    assert Point(8, "max", 0, 1, 2, 2, "auto") not in points  # two workers of two threads on two cores
    # 3 x 3 x 2 x 2 sizes, preferred ways, delays, instances; (workers, threads): (1,0) (1,1) (1,2) (2,0) (2,1)
    assert len(points) == 3 * 3 * 2 * 2 * 5


def test_neighbours_are_one_step_along_one_dimension() -> None:
    around = SPACE.neighbours(Point(8, "export", 0, 1, 1, 1, "auto"))
    assert set(around) == {
        Point(1, "export", 0, 1, 1, 1, "auto"), Point(64, "export", 0, 1, 1, 1, "auto"),  # the sizes beside 8
        Point(8, "max", 0, 1, 1, 1, "auto"), Point(8, "none", 0, 1, 1, 1, "auto"),  # every other way
        Point(8, "export", 2000, 1, 1, 1, "auto"), Point(8, "export", 0, 2, 1, 1, "auto"),
        Point(8, "export", 0, 1, 2, 1, "auto"),  # two workers of one thread each fit two cores...
        Point(8, "export", 0, 1, 1, 0, "auto"), Point(8, "export", 0, 1, 1, 2, "auto"),
    }  # fmt: skip
    # ...but from two threads, a second worker does not
    assert Point(8, "export", 0, 1, 2, 2, "auto") not in SPACE.neighbours(Point(8, "export", 0, 1, 1, 2, "auto"))


def test_the_start_joins_the_space() -> None:
    start = Point(256, "export", 500, 1, 1, 0, "auto")  # export's own values, off the default grid
    space = SPACE.with_start(start)
    assert space.max_batch_size == (1, 8, 64, 256) and space.max_queue_delay_us == (0, 500, 2000)
    assert space.allows(start) and not SPACE.allows(start)
    assert Point(64, "export", 500, 1, 1, 0, "auto") in space.neighbours(start)


def test_flags_serve_the_point() -> None:
    export_preferred = (1, 16, 64)
    point = Point(32, "export", 500, 2, 1, 0, "auto")
    assert point.preferred_sizes(export_preferred) == (1, 16, 32)  # clamped to the maximum
    assert replace(point, preferred="max").preferred_sizes(export_preferred) == (32,)
    assert replace(point, preferred="none").preferred_sizes(export_preferred) == ()
    assert point.server_flags(export_preferred) == [
        "--max-batch-size", "32", "--preferred-batch-sizes", "1,16,32", "--max-queue-delay-us", "500",
        "--instances", "2", "--workers", "1", "--intra-op-threads", "0"]  # fmt: skip
    assert "none" in replace(point, preferred="none").server_flags(export_preferred)
    # what config.json cannot carry: the server process's own settings
    assert point.process_flags() == ["--workers", "1"]
    assert Point(8, "max", 0, 1, 2, 1, "padded").process_flags() == [
        "--workers", "2", "--intra-op-threads", "1", "--batch-shapes", "padded"]  # fmt: skip


def test_powers_of_two() -> None:
    assert powers_of_two(1, 128) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert powers_of_two(3, 3) == ()
