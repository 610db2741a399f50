"""Capacity plan: how many replicas, and what autoscaling target, serve a request rate within a p99 budget.

It reads one replica's curve from a `tritongen bench` report (throughput and p99 at each concurrency) and
extrapolates: N replicas are assumed to serve N times what the one measured replica served. That holds while
replicas do not share what limited the measured one (CPU cores, a GPU, the network), so every plan says so.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tritongen.errors import CheckFailed, TritongenError

DEFAULT_HEADROOM = 0.25  # share of a replica's measured capacity kept free for bursts while the HPA reacts
REPORT_FILE = "report.json"
EXTRAPOLATION_NOTE = ("this plan extrapolates one replica's measurements: N replicas are assumed to serve N times "
                      "what one replica served in the bench, which holds only while they do not share what limited it "
                      "(CPU cores, a GPU, the network)")


@dataclass(frozen=True)
class CapacityPlan:
    """The numbers the manifests are written with, and where they came from."""

    model: str
    rate: float  # requests/s to serve (each request carries `batch_size` items, as in the bench)
    p99_ms: float  # latency budget for the 99th percentile
    headroom: float  # share of a replica's capacity kept free
    concurrency: int  # the bench's operating point: the highest throughput whose p99 was within budget
    replica_capacity: float  # requests/s one replica served at that point
    replica_p99_ms: float  # its p99 there
    replica_rate: float  # requests/s planned per replica: capacity x (1 - headroom)
    replicas: int  # enough for `rate` at `replica_rate` each
    min_replicas: int
    max_replicas: int
    queue_target_us: float  # HPA target: mean queue time per request at `replica_rate`, read off the curve
    batch_size: int
    cpus: int  # CPUs of the machine the bench ran on: each replica requests as many, to match the measurement
    report: str  # the bench report read
    measured: str  # when and where it was measured
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> CapacityPlan:
        return CapacityPlan(**{**data, "notes": tuple(data.get("notes", ()))})


def read_report(path: Path) -> dict[str, Any]:
    """A bench report.json (or the folder holding one), with the parts a plan needs checked."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TritongenError(f"no bench report at {path}", "run `tritongen bench MODEL` first, or pass --report "
                             "with the report.json it wrote") from exc
    except (OSError, ValueError) as exc:
        raise TritongenError(f"{path} is not a bench report ({exc})",
                             "pass the report.json `tritongen bench` wrote") from exc
    if not isinstance(report, dict) or not isinstance(report.get("points"), list) or "model" not in report:
        raise TritongenError(f"{path} is not a bench report (no model or points)",
                             "pass the report.json `tritongen bench` wrote")
    report.setdefault("_path", str(path.resolve()))
    return report


def find_report(model: str, folder: Path = Path("bench_reports")) -> Path:
    """The newest `bench_reports/<model>-<timestamp>/report.json` (bench's default report folder)."""
    found = sorted(folder.glob(f"{model}-*/{REPORT_FILE}"), key=lambda p: p.parent.name)
    if not found:
        raise TritongenError(f"no bench report for '{model}' under {folder}/",
                             f"run `tritongen bench {model}` first, or pass --report PATH")
    return found[-1]


def plan_capacity(report: dict[str, Any], rate: float, p99_ms: float, *, headroom: float | None = None,
                  min_replicas: int | None = None, max_replicas: int | None = None) -> CapacityPlan:
    """Size a deployment for `rate` requests/s within `p99_ms` from one replica's bench curve."""
    headroom = DEFAULT_HEADROOM if headroom is None else headroom
    if not rate > 0 or not math.isfinite(rate):
        raise TritongenError(f"--rate {rate} is not a positive request rate", "e.g. --rate 200 (requests per second)")
    if not p99_ms > 0:
        raise TritongenError(f"--p99-ms {p99_ms} is not a positive latency budget", "e.g. --p99-ms 50")
    if not 0 <= headroom < 1:
        raise TritongenError(f"--headroom {headroom} is outside [0, 1)", "e.g. --headroom 0.25 keeps a quarter free")
    batch = int(report.get("batch_size") or 1)
    points = sorted((_point(p, batch) for p in report["points"] if _usable(p)), key=lambda p: p["concurrency"])
    if not points:
        raise TritongenError(f"the bench report for '{report['model']}' has no load level without errors",
                             "fix the failing requests (see the report's first_error), then bench again")
    within = [p for p in points if p["p99_ms"] <= p99_ms]
    if not within:
        fastest = min(points, key=lambda p: p["p99_ms"])
        raise CheckFailed(f"no load level in the bench met p99 <= {p99_ms:g} ms: the lowest p99 was "
                          f"{fastest['p99_ms']:.2f} ms (concurrency {fastest['concurrency']}), so no number of "
                          "replicas meets the budget", "raise --p99-ms, or make one replica faster (tritongen tune, a "
                          "GPU) and bench again")
    best = max(within, key=lambda p: p["rate"])
    replica_rate = best["rate"] * (1 - headroom)
    replicas = max(1, math.ceil(rate / replica_rate - 1e-9))
    low = replicas if min_replicas is None else min_replicas
    high = max(2 * replicas, replicas + 1) if max_replicas is None else max_replicas
    if not 1 <= low <= high:
        raise TritongenError(f"--min-replicas {low} and --max-replicas {high} do not make a range",
                             "pass 1 <= --min-replicas <= --max-replicas")
    notes = [EXTRAPOLATION_NOTE, *_measurement_notes(report, best, points)]
    return CapacityPlan(
        model=str(report["model"]), rate=rate, p99_ms=p99_ms, headroom=headroom, concurrency=best["concurrency"],
        replica_capacity=best["rate"], replica_p99_ms=best["p99_ms"], replica_rate=replica_rate, replicas=replicas,
        min_replicas=low, max_replicas=high, queue_target_us=_queue_at(replica_rate, points, best), batch_size=batch,
        cpus=int(report.get("cpus") or 1), report=str(report.get("_path", "")),
        measured=f"{report.get('started', '?')} on {_server_name(str(report.get('server', '?')))}", notes=tuple(notes))


def _server_name(description: str) -> str:
    """"embedded tritonserver 2.51.0 (/long/path/bin/tritonserver)" without the path."""
    return re.sub(r" \(/[^)]*\)$", "", description)


def _usable(point: dict[str, Any]) -> bool:
    latency = point.get("latency") or {}
    return (point.get("requests", 0) > 0 and point.get("errors", 0) == 0 and latency.get("p99") is not None
            and point.get("throughput") is not None)


def _point(point: dict[str, Any], batch: int) -> dict[str, Any]:
    server = point.get("server") or {}
    queue_ms = server.get("queue_ms")
    return {"concurrency": int(point["concurrency"]), "rate": float(point["throughput"]) / batch,
            "p99_ms": float(point["latency"]["p99"]),
            "queue_us": None if queue_ms is None else 1000.0 * float(queue_ms),
            "client_cpu_share": point.get("client_cpu_share")}


def _queue_at(rate: float, points: list[dict[str, Any]], best: dict[str, Any]) -> float:
    """Mean queue time per request when one replica serves `rate`, interpolated along the rising part of the curve.

    Beyond the operating point more concurrency only adds queueing; below it, the queue time measured at the
    nearest load levels brackets the one at the planned rate.
    """
    curve: list[tuple[float, float]] = []
    for p in points:
        if p["concurrency"] > best["concurrency"] or p["queue_us"] is None:
            continue
        if curve and p["rate"] <= curve[-1][0]:
            continue  # more concurrency, no more throughput: not part of the rising curve
        curve.append((p["rate"], p["queue_us"]))
    if not curve:
        raise TritongenError("the bench report has no server statistics (queue time) to set the autoscaling target",
                             "bench with tritongen's embedded server or a Triton whose statistics API is reachable")
    if rate <= curve[0][0]:
        return curve[0][1]
    for (x0, y0), (x1, y1) in zip(curve, curve[1:], strict=False):
        if rate <= x1:
            return y0 + (y1 - y0) * (rate - x0) / (x1 - x0)
    return curve[-1][1]


def _measurement_notes(report: dict[str, Any], best: dict[str, Any], points: list[dict[str, Any]]) -> list[str]:
    notes = []
    if best["concurrency"] == points[-1]["concurrency"]:
        notes.append(f"p99 was still within budget at the highest concurrency measured ({best['concurrency']}): one "
                     "replica may serve more; bench with higher --concurrency to find out")
    share = best.get("client_cpu_share")
    if share:
        notes.append(f"the load generator ran on the measured machine and used {100 * share:.0f} % of its CPUs at the "
                     "operating point: a replica with the machine to itself may serve more (the plan errs on the "
                     "safe side there)")
    load = report.get("load_average") or []
    if load and report.get("cpus") and load[0] > 0.5 * report["cpus"]:
        notes.append(f"the machine was already busy when the bench started (load average {load[0]:.1f} on "
                     f"{report['cpus']} CPUs)")
    served_by = str(report.get("served_by", ""))
    if "python-runner" in served_by:
        notes.append("measured through tritongen's python runner (the embedded Triton has no onnxruntime backend): "
                     "Triton's onnxruntime backend is usually faster, so the plan errs on the safe side")
    return notes
