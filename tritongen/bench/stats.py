"""Statistics around a measurement window: Triton's per-model statistics (differences of two snapshots) and the
machine's CPU time from /proc/stat."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tritongen.bench.report import ServerStats


def server_stats(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, model: str) -> ServerStats | None:
    """Differences of two statistics snapshots of `model` (all versions together)."""
    if before is None or after is None:
        return None
    a, b = stat_totals(before, model), stat_totals(after, model)
    if b is None:
        return None
    a = a or {k: 0 for k in b}

    def d(key: str) -> int:
        return int(b.get(key, 0)) - int(a.get(key, 0))

    executions, inferences = d("execution_count"), d("inference_count")
    per_request = max(1, d("queue.count"))
    compute_ns = d("compute_input.ns") + d("compute_infer.ns") + d("compute_output.ns")
    sizes = {}
    for key, value in b.items():
        m = re.fullmatch(r"batch\.(\d+)", key)
        if m and value - int(a.get(key, 0)) > 0:
            sizes[int(m.group(1))] = value - int(a.get(key, 0))
    return ServerStats(
        inferences=inferences, executions=executions, requests=d("success.count"),
        avg_batch=inferences / executions if executions > 0 else float("nan"),
        queue_ms=d("queue.ns") / per_request / 1e6, compute_ms=compute_ns / max(1, d("compute_infer.count")) / 1e6,
        server_ms=d("success.ns") / max(1, d("success.count")) / 1e6, batch_sizes=dict(sorted(sizes.items())))


def stat_totals(snapshot: Mapping[str, Any], model: str) -> dict[str, int] | None:
    """One model's counters in a statistics snapshot (the JSON form of both protocols), summed over its versions:
    `inference_count`, `execution_count`, `<stat>.count` / `<stat>.ns` and `batch.<size>`; None when it is absent."""
    totals: dict[str, int] = {}
    found = False
    for entry in snapshot.get("model_stats", []):
        if entry.get("name") != model:
            continue
        found = True
        for key in ("inference_count", "execution_count"):
            totals[key] = totals.get(key, 0) + int(entry.get(key, 0) or 0)
        for stat, value in (entry.get("inference_stats") or {}).items():
            for part in ("count", "ns"):
                k = f"{stat}.{part}"
                totals[k] = totals.get(k, 0) + int((value or {}).get(part, 0) or 0)
        for batch in entry.get("batch_stats") or []:
            k = f"batch.{int(batch.get('batch_size', 0))}"
            totals[k] = totals.get(k, 0) + int((batch.get("compute_infer") or {}).get("count", 0) or 0)
    return totals if found else None


def statistics_name(model: str, steps: tuple[str, ...]) -> str:
    """The name to ask Triton's statistics for: the model, or "" (every model) for a pipeline, whose steps count too."""
    return "" if steps else model


def step_stats(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
               steps: tuple[str, ...]) -> dict[str, ServerStats]:
    """Each step model's statistics over the window (the steps the server has statistics for)."""
    found = {step: server_stats(before, after, step) for step in steps}
    return {step: stats for step, stats in found.items() if stats is not None}


def all_recorded(before: Mapping[str, Any], after: Mapping[str, Any], models: tuple[str, ...], sent: int) -> bool:
    """Whether the server recorded `sent` requests of every one of `models` between two snapshots (a pipeline's
    steps record theirs just after the ensemble's)."""
    return all(recorded_requests(before, after, m) >= sent for m in models)


def recorded_requests(before: Mapping[str, Any] | None, after: Mapping[str, Any], model: str) -> int:
    """Requests of `model` the server recorded (succeeded or failed) between two snapshots."""
    a = (stat_totals(before, model) or {}) if before is not None else {}
    b = stat_totals(after, model) or {}
    return sum(b.get(k, 0) - a.get(k, 0) for k in ("success.count", "fail.count"))


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_fraction(a: tuple[int, int] | None, b: tuple[int, int] | None) -> float | None:
    """The share of all CPUs busy between two `cpu_times()` readings."""
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])
