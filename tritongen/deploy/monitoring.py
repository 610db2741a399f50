"""Monitoring files of a deployment (deploy/monitoring/): a Prometheus configuration that scrapes Triton, alerting
rules with `promtool` unit tests that fire and clear each of them, and the Grafana dashboard with its provisioning.

The queue-time budgets of the alerts come from the model's measured latency where `tritongen bench` left a report
(bench_reports/<model>-*/report.json beside the repository), else from defaults that each alert says are not a
measurement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritongen.deploy import metrics as m
from tritongen.deploy.command import PORTS
from tritongen.deploy.dashboard import DASHBOARD_FILE, PROVISIONING_FILES, grafana_files
from tritongen.deploy.needs import RepositoryNeeds

PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
GRAFANA_IMAGE = "grafana/grafana:11.3.1"
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
FOLDER = "monitoring"
SCRAPE_INTERVAL = "15s"
RULES_FILE = "alerts.yml"
RULE_TESTS_FILE = "alerts.test.yml"
# Queue-time budgets from a bench report: p99 of the queue time above twice the request latency p99 measured at the
# bench's best operating point means requests wait longer than two whole requests took when it was measured; the
# average above that p99 means the server has been overloaded for a while, not hit by one burst.
QUEUE_P99_FACTOR = 2.0
QUEUE_MEAN_FACTOR = 1.0
MIN_BUDGET_US = 1_000
# Without a bench report: not a measurement (the same default the Kubernetes autoscaling target uses).
DEFAULT_QUEUE_P99_US = 100_000
DEFAULT_QUEUE_MEAN_US = 20_000
NO_SUCCESS_WINDOW = "10m"  # "no successful inference for N minutes while requests arrive"
_TEST_INSTANCE = "triton:8002"
# Every file of the monitoring folder, by path under it.
FILES = ("prometheus.yml", RULES_FILE, RULE_TESTS_FILE, DASHBOARD_FILE, *PROVISIONING_FILES)


@dataclass(frozen=True)
class Budget:
    """Queue-time budgets of one model, in microseconds, and where they came from."""

    queue_p99_us: int
    queue_mean_us: int
    source: str
    measured: bool


@dataclass(frozen=True)
class AlertTest:
    """Synthetic series for `promtool test rules` (one sample a minute) and when the alert must be quiet, firing
    and cleared again; `labels`: the firing alert's labels besides alertname and severity."""

    series: tuple[tuple[str, str], ...]
    quiet_at: str
    firing_at: str
    cleared_at: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    test: AlertTest
    labels: dict[str, str] = field(default_factory=dict)

    def expected_labels(self) -> dict[str, str]:
        return {**self.test.labels, **self.labels, "severity": self.severity}

    def expected_annotations(self) -> dict[str, str]:
        return {"summary": _expand(self.summary, self.test.labels),
                "description": _expand(self.description, self.test.labels)}


def budget_for(model: str, repository: Path) -> Budget:
    """The model's queue-time budgets: from its newest bench report beside the repository, else the defaults."""
    from tritongen.errors import TritongenError
    from tritongen.kube.plan import find_report, read_report

    try:
        report = read_report(find_report(model, Path(repository).parent / "bench_reports"))
        p99_ms = _best_p99_ms(report)
    except (TritongenError, KeyError, TypeError, ValueError):
        p99_ms = None
    if p99_ms is None or not p99_ms > 0:
        return Budget(DEFAULT_QUEUE_P99_US, DEFAULT_QUEUE_MEAN_US,
                      "a default, not a measurement: run `tritongen bench` and `tritongen deploy` again to derive it "
                      "from the model's latency", measured=False)
    p99_us = p99_ms * 1000
    where = report.get("_path", "a bench report")
    return Budget(max(MIN_BUDGET_US, round(QUEUE_P99_FACTOR * p99_us)),
                  max(MIN_BUDGET_US, round(QUEUE_MEAN_FACTOR * p99_us)),
                  f"derived from the request p99 of {p99_ms:.2f} ms that `tritongen bench` measured at concurrency "
                  f"{_best_point(report).get('concurrency')} ({where})", measured=True)


def _best_point(report: dict[str, Any]) -> dict[str, Any]:
    points = report["points"]
    best = report.get("best_concurrency")
    chosen = [p for p in points if p.get("concurrency") == best]
    return chosen[0] if chosen else max(points, key=lambda p: p.get("throughput", 0))


def _best_p99_ms(report: dict[str, Any]) -> float | None:
    point = _best_point(report)
    latency = point.get("latency") or {}
    value = latency.get("p99", point.get("p99_ms"))
    return float(value) if value is not None else None


def alerts(needs: RepositoryNeeds, budgets: dict[str, Budget]) -> tuple[Alert, ...]:
    """Every alert of the deployment: server down, failures, queue time p99 and average per model against its
    budget, no success while requests arrive, model not loaded."""
    job = m.selector(job=m.JOB)
    found: list[Alert] = [
        Alert("TritonDown", f"up{{{job}}} == 0", "1m", "critical",
              "Triton at {{ $labels.instance }} is down",
              "Prometheus cannot scrape Triton's metrics endpoint: the server is not running or not reachable.",
              AlertTest(((f'up{{{job},instance="{_TEST_INSTANCE}"}}', "1 1 0 0 0 0 1 1"),),
                        "1m", "4m", "7m", {"job": m.JOB, "instance": _TEST_INSTANCE})),
        Alert("TritonInferenceFailures", f"{m.rate(m.REQUEST_FAILURE, job, '5m')} > 0", "1m", "warning",
              "Model {{ $labels.model }} version {{ $labels.version }} has failed requests",
              "Requests failed in the last 5 minutes (nv_inference_request_failure): the server log says why.",
              AlertTest(((_test_series(m.REQUEST_FAILURE, "m", reason="BACKEND"), "0x5 1 2 3 3x10"),),
                        "5m", "9m", "15m", {"model": "m", "version": "1"})),
        _no_success_alert(job),
    ]
    for model in needs.models:
        if model.backend == "ensemble":
            continue  # its steps' queues are the ones that fill
        budget = budgets[model.name]
        found += _budget_alerts(model.name, budget)
        found.append(_not_ready_alert(model.name, job))
    return tuple(found)


def _test_series(metric: str, model: str, version: str = "1", **extra: str) -> str:
    labels = m.selector(job=m.JOB, instance=_TEST_INSTANCE, model=model, version=version, **extra)
    return f"{metric}{{{labels}}}"


def _budget_alerts(model: str, budget: Budget) -> list[Alert]:
    where = m.selector(job=m.JOB, model=model)
    p99, mean = budget.queue_p99_us, budget.queue_mean_us
    labels = {"model": model, "version": "1"}
    return [
        Alert(f"TritonQueueTimeP99High_{_slug(model)}",
              f'max by (model, version) ({m.QUEUE_SUMMARY}{{{where},quantile="0.99"}}) > {p99}', "5m", "warning",
              f"Model {model}: queue time p99 above {p99 / 1000:g} ms",
              f"Requests wait longer in the queue than the budget ({budget.source}). The server is overloaded: add "
              "instances or replicas, or bound the queue (tritongen build --max-queue-size).",
              AlertTest(((_test_series(m.QUEUE_SUMMARY, model, quantile="0.99"), f"0x5 {2 * p99}x10 0x10"),),
                        "5m", "12m", "20m", labels)),
        Alert(f"TritonQueueTimeMeanHigh_{_slug(model)}", f"{m.per_request(m.QUEUE_DURATION, where, '5m')} > {mean}",
              "5m", "warning", f"Model {model}: average queue time above {mean / 1000:g} ms",
              f"The average request has waited longer than the budget for 5 minutes ({budget.source}).",
              AlertTest(((_test_series(m.REQUEST_SUCCESS, model), "0+10x30"),
                         (_test_series(m.QUEUE_DURATION, model), f"0+{20 * mean}x10 {200 * mean}x20")),
                        "3m", "8m", "20m", labels)),
    ]


def _no_success_alert(job: str) -> Alert:
    window = NO_SUCCESS_WINDOW
    success = f"sum by (model) (increase({m.REQUEST_SUCCESS}{{{job}}}[{window}]))"
    failed = f"sum by (model) (increase({m.REQUEST_FAILURE}{{{job}}}[{window}]))"
    pending = f"sum by (model) (max_over_time({m.PENDING_REQUESTS}{{{job}}}[{window}]))"
    return Alert("TritonNoSuccessfulInference", f"{success} == 0 and on (model) ({failed} > 0 or {pending} > 0)", "0m",
                 "critical", "Model {{ $labels.model }}: no successful inference for " + window,
                 f"Requests arrive (failed or pending) but none has succeeded for {window}.",
                 AlertTest(((_test_series(m.REQUEST_SUCCESS, "m"), "0+5x10 50x14 55+5x10"),
                            (_test_series(m.REQUEST_FAILURE, "m", reason="BACKEND"), "0x12 1+1x22"),
                            (_test_series(m.PENDING_REQUESTS, "m"), "0x36")),
                           "11m", "22m", "34m", {"model": "m"}))


def _not_ready_alert(model: str, job: str) -> Alert:
    # A model that is not loaded has no series at all (Triton removes them on unload), so absence is the signal;
    # only while Triton itself answers (TritonDown covers the rest).
    return Alert(f"TritonModelNotLoaded_{_slug(model)}",
                 f'absent({m.REQUEST_SUCCESS}{{{job},model="{model}"}}) and on () (up{{{job}}} == 1)', "2m", "critical",
                 f"Model {model} is not loaded", f"Triton answers but does not serve {model}: its load failed or it "
                 "was unloaded. The server log says why.",
                 AlertTest(((f'up{{{job},instance="{_TEST_INSTANCE}"}}', "1x20"),
                            (_test_series(m.REQUEST_SUCCESS, model), "0+1x5 stale _x5 6+1x8")),
                           "4m", "9m", "14m", {"job": m.JOB, "model": model}))


def _slug(model: str) -> str:
    # Alert names are metric-name-like: letters, digits and underscores.
    return re.sub(r"[^A-Za-z0-9_]", "_", model)


def _expand(text: str, labels: dict[str, str]) -> str:
    """An annotation as Prometheus expands it for an alert with `labels` (only `{{ $labels.X }}` is used here)."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda match: labels.get(match.group(1), ""), text)


def monitoring_files(needs: RepositoryNeeds, repository: Path) -> dict[str, str]:
    """deploy/monitoring/'s files, by path under it."""
    from tritongen.render import render

    budgets = {model.name: budget_for(model.name, repository) for model in needs.models}
    found = alerts(needs, budgets)
    context = {"job": m.JOB, "target": f"triton:{PORTS['metrics']}", "scrape_interval": SCRAPE_INTERVAL,
               "rules_file": RULES_FILE, "alerts": found, "budgets": budgets}
    return {"prometheus.yml": render("monitoring/prometheus.yml.j2", context),
            RULES_FILE: render("monitoring/alerts.yml.j2", context),
            RULE_TESTS_FILE: render("monitoring/alerts.test.yml.j2", context),
            **grafana_files(f"http://prometheus:{PROMETHEUS_PORT}")}
