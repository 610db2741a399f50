"""`plan_capacity` on a bench report recorded here (SmallCNN, python format, embedded Triton 2.51, 2 CPUs), on
synthetic curves for the edge cases, and on a report measured in the test itself."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tritongen.errors import CheckFailed, TritongenError
from tritongen.kube import find_report, plan_capacity, read_report
from tritongen.kube.plan import DEFAULT_HEADROOM, EXTRAPOLATION_NOTE

RECORDED = Path(__file__).parent / "data" / "bench_report_cnn.json"


@pytest.fixture
def recorded() -> dict:
    return read_report(RECORDED)


def curve(*points: tuple[int, float, float, float], batch: int = 1, errors: dict[int, int] | None = None) -> dict:
    """A report with (concurrency, items/s, p99 ms, queue ms) points."""
    return {"model": "m", "batch_size": batch, "cpus": 8, "points": [
        {"concurrency": c, "requests": 1000, "errors": (errors or {}).get(c, 0), "throughput": t,
         "latency": {"p99": p99}, "server": {"queue_ms": q}, "client_cpu_share": 0.1} for c, t, p99, q in points]}


def test_plan_on_the_recorded_report(recorded):
    plan = plan_capacity(recorded, rate=3000, p99_ms=10)
    points = {p["concurrency"]: p for p in recorded["points"]}
    # Recorded: p99 3.9, 4.4, 6.2 ms at concurrency 1, 2, 4; 14 ms and more from 8 on, where throughput fell too.
    assert plan.concurrency == 4 and plan.replica_capacity == pytest.approx(points[4]["throughput"])
    assert plan.replica_p99_ms == pytest.approx(points[4]["latency"]["p99"]) and plan.replica_p99_ms <= 10
    assert plan.headroom == DEFAULT_HEADROOM
    assert plan.replica_rate == pytest.approx(points[4]["throughput"] * 0.75)
    assert plan.replicas == 3 == math.ceil(3000 / plan.replica_rate)
    assert (plan.min_replicas, plan.max_replicas) == (3, 6)
    assert plan.cpus == recorded["cpus"] == 2
    # The HPA target: queue time where one replica serves its planned rate, between the load levels around it.
    xs = [points[c]["throughput"] for c in (1, 2, 4)]
    ys = [1000 * points[c]["server"]["queue_ms"] for c in (1, 2, 4)]
    assert plan.queue_target_us == pytest.approx(float(np.interp(plan.replica_rate, xs, ys)))
    assert ys[0] < plan.queue_target_us < ys[2]
    assert plan.notes[0] == EXTRAPOLATION_NOTE and "extrapolates one replica" in plan.notes[0]
    assert any("load generator ran on the measured machine" in n for n in plan.notes)


def test_a_larger_budget_never_plans_more_replicas(recorded):
    counts = [plan_capacity(recorded, rate=3000, p99_ms=budget).replicas for budget in (4.0, 5, 10, 20, 60, 1000)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_headroom_and_replica_bounds(recorded):
    plan = plan_capacity(recorded, rate=3000, p99_ms=10, headroom=0)
    assert plan.replica_rate == plan.replica_capacity and plan.replicas == 2
    exact = plan_capacity(recorded, rate=2 * plan.replica_rate, p99_ms=10, headroom=0)
    assert exact.replicas == 2  # exactly two replicas' worth needs two, not three
    bounded = plan_capacity(recorded, rate=3000, p99_ms=10, min_replicas=2, max_replicas=10)
    assert (bounded.replicas, bounded.min_replicas, bounded.max_replicas) == (3, 2, 10)


def test_no_load_level_within_budget_is_a_failed_check(recorded):
    with pytest.raises(CheckFailed, match=r"the lowest p99 was 3\.88 ms \(concurrency 1\)") as info:
        plan_capacity(recorded, rate=100, p99_ms=2)
    assert info.value.exit_code == 1


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rate": 0, "p99_ms": 10}, "--rate"), ({"rate": float("inf"), "p99_ms": 10}, "--rate"),
    ({"rate": 10, "p99_ms": -1}, "--p99-ms"), ({"rate": 10, "p99_ms": 10, "headroom": 1.0}, "--headroom"),
    ({"rate": 10, "p99_ms": 10, "min_replicas": 5, "max_replicas": 2}, "--min-replicas"),
])
def test_bad_inputs_are_one_line_errors(recorded, kwargs, match):
    with pytest.raises(TritongenError, match=match) as info:
        plan_capacity(recorded, **kwargs)
    assert not isinstance(info.value, CheckFailed)


def test_points_with_errors_are_not_operating_points():
    report = curve((1, 100, 5, 0.1), (2, 190, 6, 0.2), (4, 400, 7, 0.5), errors={4: 3})
    plan = plan_capacity(report, rate=150, p99_ms=10, headroom=0)
    assert plan.concurrency == 2 and plan.replicas == 1
    with pytest.raises(TritongenError, match="no load level without errors"):
        plan_capacity(curve((1, 100, 5, 0.1), errors={1: 1}), rate=1, p99_ms=10)


def test_rate_is_in_requests_of_the_bench_batch_size():
    plan = plan_capacity(curve((1, 400, 5, 0.1), batch=4), rate=250, p99_ms=10, headroom=0)
    assert plan.replica_capacity == 100 and plan.replicas == 3  # 400 items/s are 100 requests of 4 items


def test_queue_target_follows_the_rising_curve_only():
    # Concurrency 8 adds no throughput: its (larger) queue time is not read as the one at a lower rate.
    report = curve((1, 100, 2, 0.1), (2, 200, 3, 0.3), (4, 300, 4, 0.9), (8, 290, 5, 4.0))
    plan = plan_capacity(report, rate=100, p99_ms=10, headroom=0.5)
    assert plan.concurrency == 4 and plan.replica_rate == 150
    assert plan.queue_target_us == pytest.approx(200)  # halfway between 100 us and 300 us
    low = plan_capacity(report, rate=10, p99_ms=2.5, headroom=0.5)  # below the first point: its queue time
    assert low.queue_target_us == pytest.approx(100)
    notes = plan_capacity(curve((1, 100, 2, 0.1), (2, 200, 3, 0.3)), rate=10, p99_ms=10).notes
    assert any("highest concurrency measured (2)" in n for n in notes)


def test_read_and_find_reports(tmp_path, recorded):
    assert read_report(RECORDED.parent / RECORDED.name)["model"] == "cnn"
    folder = tmp_path / "bench_reports"
    for stamp in ("20261201-100000", "20261202-090000"):
        (folder / f"cnn-{stamp}").mkdir(parents=True)
        (folder / f"cnn-{stamp}" / "report.json").write_text(json.dumps({**recorded, "started": stamp}))
    newest = find_report("cnn", folder)
    assert newest.parent.name == "cnn-20261202-090000"
    assert read_report(newest.parent)["started"] == "20261202-090000"  # a folder holding report.json
    with pytest.raises(TritongenError, match="no bench report for 'other'"):
        find_report("other", folder)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TritongenError, match="is not a bench report"):
        read_report(tmp_path / "bad.json")
    with pytest.raises(TritongenError, match="no bench report at"):
        read_report(tmp_path / "missing.json")


def test_plan_round_trips_through_its_json(recorded):
    from tritongen.kube import CapacityPlan

    plan = plan_capacity(recorded, rate=3000, p99_ms=10)
    assert CapacityPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


@pytest.mark.server
@pytest.mark.slow
def test_plan_on_a_report_measured_here(cnn_repository, tmp_path):
    """bench on the embedded Triton, its report.json as written, then plan and the manifests from it."""
    import yaml

    from tritongen.bench import LoadSettings, bench_model, write_report
    from tritongen.kube import KubeOptions, write_target

    report = bench_model(cnn_repository, "cnn", concurrencies=(1, 2, 4), settings=LoadSettings(duration_s=1.5),
                         warmup_s=0.5, ceiling=False, generator_check=False)
    write_report(report, tmp_path / "bench")
    measured = read_report(tmp_path / "bench")
    points = [p for p in measured["points"] if p["errors"] == 0]
    assert len(points) == 3
    budget = 2 * max(p["latency"]["p99"] for p in points)  # every level within budget
    best = max(points, key=lambda p: p["throughput"])
    rate = 5 * best["throughput"]
    plan = plan_capacity(measured, rate=rate, p99_ms=budget)
    assert plan.concurrency == best["concurrency"] and plan.replica_p99_ms <= budget
    assert plan.replicas * plan.replica_rate >= rate > (plan.replicas - 1) * plan.replica_rate
    assert plan.replicas == math.ceil(rate / (best["throughput"] * (1 - DEFAULT_HEADROOM)) - 1e-9)
    queues = [1000 * p["server"]["queue_ms"] for p in points]
    assert min(queues) <= plan.queue_target_us <= max(queues)
    out = tmp_path / "kubernetes"
    write_target(cnn_repository, "kubernetes", out, KubeOptions(plan=plan))
    hpa = yaml.safe_load((out / "hpa.yaml").read_text())
    assert hpa["spec"]["minReplicas"] == plan.replicas
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == str(round(plan.queue_target_us))
    assert copy.deepcopy(plan.to_dict())["report"].endswith("report.json")
