"""The Grafana dashboard's structure and its provisioning (Grafana cannot run here; tests/deploy/test_live.py runs
every query in a real Prometheus scraping a real Triton)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_compose import write_model
from tritongen.deploy import write_deploy
from tritongen.deploy.dashboard import DASHBOARD_FILE, DATASOURCE_UID, GRAFANA_DASHBOARDS, PROVISIONING_FILES

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


@pytest.fixture
def monitoring(tmp_path: Path) -> Path:
    write_model(tmp_path / "model_repository", "a")
    write_deploy(tmp_path / "model_repository")
    return tmp_path / "deploy" / "monitoring"


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_is_valid_json_with_unique_panels_laid_out_without_overlap(monitoring: Path):
    dashboard = json.loads((monitoring / DASHBOARD_FILE).read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36 and dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"panel '{panel['title']}' overlaps another"
        cells |= mine
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs)
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["fieldConfig"]["defaults"]["unit"]


def test_every_variable_a_query_uses_is_defined(monitoring: Path):
    dashboard = json.loads((monitoring / DASHBOARD_FILE).read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == DATASOURCE_UID
    for name in ("model", "version"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"]
        assert variables[name]["allValue"] == ".*"  # so `=~"$model"` matches every model when All is chosen
    used = {m for expr in dashboard_queries(dashboard) for m in re.findall(r"\$(\w+)", expr)}
    assert used - GRAFANA_BUILTINS <= set(variables)
    assert {"model", "version", "__rate_interval"} <= used


def test_panels_cover_what_an_operator_needs(monitoring: Path):
    dashboard = json.loads((monitoring / DASHBOARD_FILE).read_text())
    text = " ".join(dashboard_queries(dashboard))
    for metric in ("nv_inference_count", "nv_inference_exec_count", "nv_inference_request_success",
                   "nv_inference_request_failure", "nv_inference_queue_duration_us",
                   "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
                   "nv_inference_compute_output_duration_us", "nv_inference_request_summary_us", "nv_cpu_utilization",
                   "nv_gpu_utilization", "nv_cache_num_hits_per_model", "nv_inference_pending_request_count"):
        assert metric in text, metric
    titles = [p["title"] for p in dashboard["panels"]]
    assert "Average batch size" in titles and "Time per request by stage" in titles
    stages = next(p for p in dashboard["panels"] if p["title"] == "Time per request by stage")
    assert [t["legendFormat"].split()[-1] for t in stages["targets"]] == ["queue", "input", "infer", "output"]
    assert stages["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


def test_provisioning_loads_the_dashboard_with_the_compose_prometheus(monitoring: Path):
    datasources = yaml.safe_load((monitoring / PROVISIONING_FILES[0]).read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == DATASOURCE_UID
    assert source["url"] == "http://prometheus:9090"  # the compose service
    providers = yaml.safe_load((monitoring / PROVISIONING_FILES[1]).read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == GRAFANA_DASHBOARDS
    compose = yaml.safe_load((monitoring.parent / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    assert f"./monitoring/grafana/dashboards:{GRAFANA_DASHBOARDS}:ro" in volumes
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
