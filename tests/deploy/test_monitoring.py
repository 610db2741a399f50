"""The monitoring files as Prometheus' own tool reads them: the configuration and rules are valid, the generated unit
tests fire and clear every alert, a broken rule fails them, and the queue-time budgets come from a bench report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.prometheus import promtool
from tests.deploy.test_compose import write_model
from tritongen.deploy import write_deploy
from tritongen.deploy.monitoring import (
    DEFAULT_QUEUE_MEAN_US,
    DEFAULT_QUEUE_P99_US,
    GRAFANA_IMAGE,
    PROMETHEUS_IMAGE,
    QUEUE_P99_FACTOR,
)


@pytest.fixture
def monitoring(tmp_path: Path) -> Path:
    repository = tmp_path / "model_repository"
    write_model(repository, "a")
    write_model(repository, "b-2")  # not a metric-name character: alert names are slugged
    write_deploy(repository)
    return tmp_path / "deploy" / "monitoring"


def test_promtool_accepts_the_config_and_rules_and_the_unit_tests_fire_and_clear_every_alert(monitoring: Path):
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"),
                 ("test", "rules", "alerts.test.yml")):
        result = promtool(*args, cwd=monitoring)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    rules = [r["alert"] for g in yaml.safe_load((monitoring / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    assert {"TritonDown", "TritonInferenceFailures", "TritonNoSuccessfulInference", "TritonQueueTimeP99High_a",
            "TritonQueueTimeMeanHigh_b_2", "TritonModelNotLoaded_a", "TritonModelNotLoaded_b_2"} <= set(rules)
    tests = yaml.safe_load((monitoring / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    cleared = {}
    for test in tests:  # each alert: quiet, firing, then quiet again, in time order
        cases = sorted(test["alert_rule_test"], key=lambda c: int(c["eval_time"].rstrip("m")))
        cleared[cases[0]["alertname"]] = [bool(c["exp_alerts"]) for c in cases]
    assert fired == set(rules) == set(cleared)
    assert all(sequence == [False, True, False] for sequence in cleared.values()), cleared


@pytest.mark.parametrize("change", [("up{job=\\\"triton\\\"} == 0", "up{job=\\\"triton\\\"} == 2"),
                                    ("> 0\"", "> 5\""), ("for: 5m", "for: 15m")],
                         ids=["down never fires", "failures need more", "p99 waits longer"])
def test_a_broken_rule_fails_its_unit_test(monitoring: Path, change: tuple[str, str]):
    rules = monitoring / "alerts.yml"
    text = rules.read_text()
    assert change[0] in text
    rules.write_text(text.replace(change[0], change[1], 1))
    result = promtool("test", "rules", "alerts.test.yml", cwd=monitoring)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_queue_budgets_come_from_the_newest_bench_report_else_a_labelled_default(tmp_path: Path):
    repository = tmp_path / "model_repository"
    write_model(repository, "cnn")
    write_deploy(repository)
    rules = (tmp_path / "deploy" / "monitoring" / "alerts.yml").read_text()
    assert f"> {DEFAULT_QUEUE_P99_US}" in rules and f"> {DEFAULT_QUEUE_MEAN_US}" in rules
    assert "a default, not a measurement" in rules

    report = json.loads((Path(__file__).parents[1] / "kube" / "data" / "bench_report_cnn.json").read_text())
    folder = tmp_path / "bench_reports" / "cnn-20261202-015359"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    best = next(p for p in report["points"] if p["concurrency"] == report["best_concurrency"])
    write_deploy(repository)
    rules = (tmp_path / "deploy" / "monitoring" / "alerts.yml").read_text()
    budget = round(QUEUE_P99_FACTOR * best["latency"]["p99"] * 1000)
    assert f"quantile=\\\"0.99\\\"}}) > {budget}" in rules
    assert f"derived from the request p99 of {best['latency']['p99']:.2f} ms" in rules
    assert promtool("test", "rules", "alerts.test.yml", cwd=tmp_path / "deploy" / "monitoring").returncode == 0


def test_monitoring_folder_is_what_the_compose_profile_mounts(monitoring: Path):
    compose = yaml.safe_load((monitoring.parent / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]
    assert "profiles" not in services["triton"]
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (monitoring.parent / source).exists(), f"{service} mounts {source}, which was not written"
    prometheus = yaml.safe_load((monitoring / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["triton:8002"]  # the triton service, inside the compose network
    # Pinned public images, replaceable from .env.
    assert services["prometheus"]["image"] == f"${{PROMETHEUS_IMAGE:-{PROMETHEUS_IMAGE}}}"
    assert services["grafana"]["image"] == f"${{GRAFANA_IMAGE:-{GRAFANA_IMAGE}}}"
    assert all(image.rsplit(":", 1)[1][0].isdigit() or image.rsplit(":", 1)[1].startswith("v")
               for image in (PROMETHEUS_IMAGE, GRAFANA_IMAGE))
