"""The autoscaling signal on real parts: the embedded Triton's `/metrics`, and a real Prometheus (Debian's package)
scraping it, running the queries from the generated adapter rule, KEDA ScaledObject and KServe InferenceService.

No cluster here: the Prometheus Operator would add the `namespace` and `pod` labels to the scraped series; this
Prometheus adds them with static labels on two scrape jobs of the same server, one named like a pod of the
Deployment and one like a pod of KServe's predictor, so each query must pick its own pod.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.deploy.prometheus import promtool, query, running
from tritongen.kube import KubeOptions, metrics, write_target
from tritongen.server.local import free_ports

NAMESPACE = "tritongen-test"
POD = "triton-cnn-5d9c7b8f6d-x2kqz"  # as the Deployment names its pods: <name>-<template hash>-<5 characters>
KSERVE_POD = "triton-cnn-predictor-7b4f9c8d5-q8wzt"

pytestmark = [pytest.mark.server, pytest.mark.slow]


def counters(text: str) -> dict[str, float]:
    """Metric name -> value summed over all its series, for the counters in a /metrics text."""
    kinds = dict(re.findall(r"^# TYPE (\w+) (\w+)$", text, flags=re.M))
    totals: dict[str, float] = {}
    for name, value in re.findall(r"^(\w+)(?:\{[^}]*\})? (\S+)$", text, flags=re.M):
        if kinds.get(name) == "counter":
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"http://{url}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.fixture(scope="module")
def served(cnn_repository: Path) -> Iterator[object]:
    from tritongen.server import launch

    with launch(cnn_repository, "embedded") as handle:
        yield handle


def infer(handle: object, count: int, concurrency: int = 8) -> None:
    import tritonclient.http as httpclient

    def one(_: int) -> None:
        client = httpclient.InferenceServerClient(handle.http_url)  # type: ignore[attr-defined]
        item = httpclient.InferInput("image", [1, 3, 32, 32], "FP32")
        item.set_data_from_numpy(np.random.rand(1, 3, 32, 32).astype(np.float32))
        client.infer("cnn", [item])
        client.close()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))


def test_autoscaling_metrics_are_counters_a_real_triton_exports(served):
    infer(served, 4)
    text = scrape(served.metrics_url)  # type: ignore[attr-defined]
    types = dict(re.findall(r"^# TYPE (\w+) (\w+)$", text, flags=re.M))
    for name in metrics.TRITON_METRICS:
        assert types.get(name) == "counter", f"{name} is not a counter in Triton's /metrics"
        assert re.search(rf'^{name}\{{model="cnn",version="1"\}} \d', text, flags=re.M)
    assert metrics.HPA_METRIC == metrics.QUEUE_DURATION + "_per_request"


@pytest.fixture(scope="module")
def prometheus(served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Before the first scrape: counters start well above what a test's traffic adds, so that rate() extrapolates
    # both counters of a ratio alike (Prometheus shortens the extrapolation of a counter that starts near zero), and
    # every sample Prometheus takes before a test's traffic holds the values of an idle server.
    infer(served, 300)
    folder = tmp_path_factory.mktemp("prometheus")
    target = served.metrics_url  # type: ignore[attr-defined]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [
        {"job_name": job, "static_configs": [{"targets": [target], "labels": {"namespace": NAMESPACE, "pod": pod}}]}
        for job, pod in (("deployment", POD), ("kserve", KSERVE_POD))]}
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = promtool("check", "config", str(folder / "prometheus.yml"), cwd=folder)
    assert check.returncode == 0, check.stdout + check.stderr
    (port,) = free_ports(1)
    with running(folder / "prometheus.yml", port, targets=2) as address:
        yield address


def adapter_query(rule: dict, hpa: dict, namespace: str, pods: list[str]) -> str:
    """The query prometheus-adapter sends for `hpa`'s metric on `pods` (pkg/naming/metrics_query.go, v0.12.0): the
    HPA's metric selector, then the namespace, then the pods."""
    selector = hpa["spec"]["metrics"][0]["pods"]["metric"].get("selector", {}).get("matchLabels", {})
    matchers = [f'{k}="{v}"' for k, v in selector.items()] + [f'namespace="{namespace}"']
    matchers.append(f'pod="{pods[0]}"' if len(pods) == 1 else f'pod=~"{"|".join(pods)}"')
    series = re.fullmatch(r"(\w+)\{.*\}", rule["seriesQuery"]).group(1)
    return (rule["metricsQuery"].replace("<<.LabelMatchers>>", ",".join(matchers))
            .replace("<<.GroupBy>>", "pod").replace("<<.Series>>", series))


def generated_queries(repository: Path, folder: Path, plan: object = None) -> tuple[dict, dict, dict[str, str], str]:
    """(adapter rule, HPA, KEDA trigger queries by name, KServe's query) as written for `repository`."""
    write_target(repository, "kubernetes", folder / "kubernetes", KubeOptions(namespace=NAMESPACE, plan=plan))
    write_target(repository, "kserve", folder / "kserve", KubeOptions(namespace=NAMESPACE, plan=plan))
    k8s = folder / "kubernetes"
    (rule,) = yaml.safe_load((k8s / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]
    hpa = yaml.safe_load((k8s / "hpa.yaml").read_text())
    triggers = {t["name"]: t["metadata"]["query"] for t in
                yaml.safe_load((k8s / "components/keda/scaledobject.yaml").read_text())["spec"]["triggers"]}
    isvc = yaml.safe_load((folder / "kserve" / "inferenceservice.yaml").read_text())
    return rule, hpa, triggers, isvc["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]["metric"]["query"]


def test_generated_queries_run_in_a_real_prometheus_scraping_triton(served, prometheus, cnn_repository, tmp_path):
    from tritongen.kube import plan_capacity, read_report

    recorded = read_report(Path(__file__).parent / "data" / "bench_report_cnn.json")
    plan = plan_capacity(recorded, rate=3000, p99_ms=10)  # for model cnn: the queries then select its series
    variants = {"default": generated_queries(cnn_repository, tmp_path / "default"),
                "planned": generated_queries(cnn_repository, tmp_path / "planned", plan)}
    rule = variants["default"][0]
    assert variants["planned"][0] == rule  # one adapter rule; the HPA's selector narrows it
    assert variants["planned"][1]["spec"]["metrics"][0]["pods"]["metric"]["selector"] == {"matchLabels": {"model": "cnn"}}
    # The series the adapter discovers exist, with the labels its resource overrides map.
    found = query(prometheus, rule["seriesQuery"])
    assert {r["metric"]["pod"] for r in found} == {POD, KSERVE_POD}

    before = counters(scrape(served.metrics_url))  # type: ignore[attr-defined]
    time.sleep(3.5)  # idle scrapes before the traffic
    infer(served, 300)
    time.sleep(3.5)  # and after it
    after = counters(scrape(served.metrics_url))  # type: ignore[attr-defined]
    sent = after[metrics.REQUEST_SUCCESS] - before[metrics.REQUEST_SUCCESS]
    assert sent == 300
    expected = (after[metrics.QUEUE_DURATION] - before[metrics.QUEUE_DURATION]) / sent  # µs queued per request
    assert expected > 0

    for variant, (rule, hpa, triggers, kserve_query) in variants.items():
        per_pod = query(prometheus, adapter_query(rule, hpa, NAMESPACE, [POD, KSERVE_POD]))
        assert {r["metric"]["pod"] for r in per_pod} == {POD, KSERVE_POD}, variant
        for r in per_pod:
            assert float(r["value"][1]) == pytest.approx(expected, rel=1e-6), variant
        for promql in (triggers["queue-time"], kserve_query):  # each picks its own pod only
            (sample,) = query(prometheus, promql)
            assert float(sample["value"][1]) == pytest.approx(expected, rel=1e-6), variant
    triggers = variants["planned"][2]
    assert "request-rate" not in variants["default"][2]  # only with a capacity plan
    (sample,) = query(prometheus, triggers["request-rate"])
    # rate() over 1m: the 300 requests divided by the window, extrapolated by at most a scrape interval each side.
    assert sent / 60 * 0.999 <= float(sample["value"][1]) <= sent / 60 * 2
    # The planned queries select the model: another model's name selects nothing.
    assert 'model="cnn"' in triggers["request-rate"]
    assert query(prometheus, triggers["request-rate"].replace('model="cnn"', 'model="other"')) == []
