"""The report values: latency percentiles, the best point, the share of the ceiling, and the JSON form."""

from __future__ import annotations

import json
import math

import pytest

from tests.bench.reports import point, report
from tritongen.bench import LatencyStats, json_safe


def test_latency_percentiles_are_in_milliseconds() -> None:
    stats = LatencyStats.of([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert stats.p50 == pytest.approx(50.5) and stats.p99 == pytest.approx(99.01) and stats.max == 100
    assert stats.mean == pytest.approx(50.5)
    assert math.isnan(LatencyStats.of([]).p50)


def test_the_best_point_and_the_share_of_the_ceiling() -> None:
    r = report((point(1, 100.0), point(4, 300.0), point(16, 250.0), point(32, 0.0, requests=0)), ceiling=600.0)
    assert r.best is not None and r.best.concurrency == 4
    assert r.fraction_of_ceiling == pytest.approx(0.5)
    assert r.point(16) is r.points[2] and r.point(2) is None
    assert report((point(1, 0.0, requests=0),), ceiling=600.0).best is None
    assert report((point(1, 10.0),), ceiling=None).fraction_of_ceiling is None


def test_the_json_form_has_no_nan_and_string_keys() -> None:
    r = report((point(1, 100.0), point(4, 300.0)), ceiling=600.0)
    data = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert data["ok"] and data["best_concurrency"] == 4 and data["best_throughput"] == 300.0
    assert data["fraction_of_ceiling"] == pytest.approx(0.5)
    assert set(data["ceiling"]["by_batch"]) == {"1", "8"}
    assert json_safe({1: float("nan"), "x": [float("inf"), 2.0]}) == {"1": None, "x": [None, 2.0]}
