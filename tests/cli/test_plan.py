"""`tritongen plan` on the command line, on the bench report recorded in tests/kube/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.kube.repositories import write_repositories

RECORDED = Path(__file__).resolve().parent.parent / "kube" / "data" / "bench_report_cnn.json"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder as a user has it: model_repository/ and bench_reports/cnn-<time>/report.json."""
    repositories = write_repositories(tmp_path / "made")
    shutil.copytree(repositories["cpu"], tmp_path / "model_repository")
    (tmp_path / "bench_reports" / "cnn-20261202-015359").mkdir(parents=True)
    shutil.copy(RECORDED, tmp_path / "bench_reports" / "cnn-20261202-015359" / "report.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_plan_prints_the_numbers_and_writes_them_into_the_manifests(cli, project):
    assert cli("deploy", "--target", "kserve").exit_code == 0
    result = cli("plan", "cnn", "--rate", "3000", "--p99-ms", "10")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "cnn: 3000 requests/s within p99 10 ms" in out
    assert "1,507.9 requests/s at concurrency 4, p99 6.19 ms" in out
    assert "replicas: 3 (autoscaling 3 to 6)" in out and "HPA target: 296 µs" in out
    assert "note: this plan extrapolates one replica's measurements" in out
    # Written into the deployment that was there (KServe), not into one nobody asked for.
    assert f"wrote the plan into {project / 'deploy' / 'kserve'}" in out
    assert not (project / "deploy" / "kubernetes").exists()
    isvc = yaml.safe_load((project / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    assert isvc["spec"]["predictor"]["minReplicas"] == 3


def test_plan_json_and_no_write(cli, project):
    result = cli("plan", "cnn", "--rate", "100", "--p99-ms", "5", "--headroom", "0.5", "--no-write", "--json",
                 "--report", RECORDED)
    assert result.exit_code == 0, result.stderr
    payload = result.json()
    assert payload["ok"] and payload["replicas"] == 1 and payload["concurrency"] == 2 and payload["written"] == []
    assert payload["headroom"] == 0.5 and not (project / "deploy").exists()
    # Without a deployment there, the plan goes into a new Kubernetes one.
    assert cli("plan", "cnn", "--rate", "100", "--p99-ms", "5").exit_code == 0
    plan = json.loads((project / "deploy" / "kubernetes" / "capacity-plan.json").read_text())
    assert plan["replicas"] == 1 and plan["rate"] == 100


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--rate", "100", "--p99-ms", "1"], 1, "no load level in the bench met p99 <= 1 ms"),
    (["--rate", "-5", "--p99-ms", "10"], 2, "--rate -5.0 is not a positive request rate"),
    (["--rate", "5", "--p99-ms", "10", "--report", "nowhere.json"], 2, "no bench report at nowhere.json"),
])
def test_errors(cli, project, args, code, message):
    result = cli("plan", "cnn", *args)
    assert result.exit_code == code and message in result.stderr and "Traceback" not in result.stderr


def test_a_report_of_another_model_is_refused(cli, project):
    result = cli("plan", "other", "--rate", "5", "--p99-ms", "10", "--report", RECORDED)
    assert result.exit_code == 2 and "is for 'cnn', not 'other'" in result.stderr
