"""Triton's statistics for a window (differences of two snapshots) and the machine's CPU time."""

from __future__ import annotations

import pytest

from tritongen.bench import server_stats
from tritongen.bench.stats import busy_fraction, cpu_times, recorded_requests, stat_totals


def snapshot(inferences: int, executions: int, queue_ns: int, compute_ns: int, sizes: dict[int, int],
             failures: int = 0) -> dict:
    stat = {"count": str(inferences), "ns": str(queue_ns)}
    return {"model_stats": [{
        "name": "m", "version": "1", "inference_count": str(inferences), "execution_count": str(executions),
        "inference_stats": {"success": {"count": str(inferences), "ns": str(queue_ns + compute_ns)},
                            "fail": {"count": str(failures), "ns": "0"},
                            "queue": stat, "compute_input": {}, "compute_output": {},
                            "compute_infer": {"count": str(inferences), "ns": str(compute_ns)}},
        "batch_stats": [{"batch_size": str(b), "compute_infer": {"count": str(n), "ns": "1"}}
                        for b, n in sizes.items()]}]}


def test_server_stats_are_differences_of_two_snapshots() -> None:
    stats = server_stats(snapshot(10, 10, 1_000_000, 5_000_000, {1: 10}),
                         snapshot(110, 35, 21_000_000, 105_000_000, {1: 15, 4: 20}), "m")
    assert stats is not None
    assert (stats.inferences, stats.executions, stats.requests) == (100, 25, 100)
    assert stats.avg_batch == 4 and stats.batch_sizes == {1: 5, 4: 20}
    assert stats.queue_ms == pytest.approx(0.2) and stats.compute_ms == pytest.approx(1.0)
    assert stats.server_ms == pytest.approx(1.2)
    assert server_stats(None, snapshot(1, 1, 1, 1, {}), "m") is None
    assert server_stats(snapshot(1, 1, 1, 1, {}), snapshot(1, 1, 1, 1, {}), "other") is None


def test_versions_add_up_and_failures_count_as_recorded() -> None:
    two_versions = snapshot(5, 5, 1, 1, {1: 5}, failures=1)
    two_versions["model_stats"].append({**two_versions["model_stats"][0], "version": "2"})
    totals = stat_totals(two_versions, "m")
    assert totals is not None and totals["success.count"] == 10 and totals["batch.1"] == 10
    assert stat_totals(two_versions, "other") is None
    assert recorded_requests(snapshot(5, 5, 1, 1, {}), snapshot(9, 9, 1, 1, {}, failures=2), "m") == 6
    assert recorded_requests(None, snapshot(3, 3, 1, 1, {}), "m") == 3


def test_machine_cpu_share_from_proc_stat() -> None:
    a = cpu_times()
    assert a is not None and 0 <= a[0] <= a[1]
    assert busy_fraction((100, 400), (250, 600)) == pytest.approx(0.75)
    assert busy_fraction(None, a) is None and busy_fraction(a, a) is None


def test_a_pipeline_window_waits_for_every_step_and_splits_its_time_per_step() -> None:
    from tritongen.bench.stats import all_recorded, statistics_name, step_stats

    def pipeline(n: int, steps_n: int) -> dict:
        stats = snapshot(n, n, 0, 0, {})["model_stats"]
        for step, factor in (("pre", 1), ("net", 2)):
            stats.append({**snapshot(steps_n, steps_n, factor * 1_000_000 * steps_n, 2_000_000 * steps_n,
                                     {1: steps_n})["model_stats"][0], "name": step})
        return {"model_stats": stats}

    assert statistics_name("m", ("pre", "net")) == "" and statistics_name("m", ()) == "m"
    before, lagging, after = pipeline(0, 0), pipeline(10, 9), pipeline(10, 10)
    assert not all_recorded(before, lagging, ("m", "pre", "net"), 10)  # a step has not counted its last request yet
    assert all_recorded(before, after, ("m", "pre", "net"), 10)
    split = step_stats(before, after, ("pre", "net", "gone"))
    assert list(split) == ["pre", "net"]  # a step without statistics is left out, not shown as zero
    assert split["pre"].queue_ms == pytest.approx(1.0) and split["net"].queue_ms == pytest.approx(2.0)
    assert split["net"].requests == 10
