"""The monitoring files against real parts: the embedded Triton (started as the deployment starts it: latency summaries,
a response cache for the model that enables one) scraped by Debian's Prometheus with the generated configuration and
alerting rules, while clients send requests over HTTP and gRPC.

Prometheus counts exactly the requests the clients sent; every query of the dashboard returns data (the GPU panels
excepted: no GPU here, so Triton exports no GPU series); every rule evaluates; every metric name tritongen uses is in
the server's `/metrics`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.deploy import prometheus
from tests.load import run_for
from tests.rollout.versions import MODEL, OUTPUT
from tests.servers import consecutive_free_ports
from tritongen.deploy import metrics, write_deploy
from tritongen.deploy.dashboard import DASHBOARD_FILE, panels

pytestmark = [pytest.mark.server, pytest.mark.slow]

WINDOW = "30s"
CACHED = "cached"  # stands in for Grafana's $__rate_interval: at least four 1 s scrapes


@pytest.fixture(scope="module")
def live(two_versions: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str, Path]]:
    from tritongen.server import serve

    root = tmp_path_factory.mktemp("live")
    repository = root / "model_repository"
    shutil.copytree(two_versions, repository, ignore=shutil.ignore_patterns(".tritongen-*"))
    # The same model again with the response cache: Triton 2.51 exports no request-time summary for such a model,
    # so the dashboard's queries need both kinds to all return data.
    shutil.copytree(repository / MODEL, repository / CACHED)
    config = repository / CACHED / "config.pbtxt"
    config.write_text(config.read_text().replace(f'name: "{MODEL}"', f'name: "{CACHED}"')
                      + "\nresponse_cache { enable: true }\n")
    write_deploy(repository)
    monitoring = root / "deploy" / "monitoring"
    with serve(repository, "embedded") as served:
        # The generated configuration, pointed at this server and scraping every second.
        scrape = yaml.safe_load((monitoring / "prometheus.yml").read_text())
        scrape["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        scrape["rule_files"] = [str(monitoring / name) for name in scrape["rule_files"]]
        scrape["scrape_configs"][0]["static_configs"][0]["targets"] = [served.handle.metrics_url]
        folder = root / "prometheus"
        folder.mkdir()
        (folder / "prometheus.yml").write_text(yaml.safe_dump(scrape))
        with prometheus.running(folder / "prometheus.yml", consecutive_free_ports(1)[0]) as address:
            yield served, address, monitoring


def total(address: str, metric: str, model: str) -> float | None:
    return prometheus.value(address, f'sum({metric}{{job="triton",model="{model}"}})')


def wait_for(address: str, metric: str, model: str, expected: float, timeout_s: float = 15.0) -> float | None:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = total(address, metric, model)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def test_prometheus_counts_exactly_the_requests_the_clients_sent(live):
    served, address, _ = live
    handle = served.handle
    rng = np.random.default_rng(0)
    for model in (MODEL, CACHED):
        before = wait_for(address, metrics.REQUEST_SUCCESS, model, -1, timeout_s=3)  # the idle value, once scraped
        assert before is not None
        sent = []
        for protocol in ("http", "grpc"):
            for _ in range(3):  # a few different inputs, so both cache hits and misses happen
                feeds = {"x": rng.normal(size=(1, 4)).astype(np.float32)}
                sent += run_for({protocol: getattr(handle, f"{protocol}_url")}, model, feeds, OUTPUT, 4, 0.5)
        bad = run_for({"grpc": handle.grpc_url}, model, {"x": np.ones((1, 5), np.float32)}, OUTPUT, 1, 0.3,
                      backoff_s=0.05)
        ok = [a for a in sent if a.ok]
        assert len(ok) == len(sent) > 100 and not any(a.ok for a in bad)
        counted = wait_for(address, metrics.REQUEST_SUCCESS, model, before + len(ok))
        failures = total(address, metrics.REQUEST_FAILURE, model)
        print(f"\n{model}: client {len(ok)} successful requests ({sum(a.protocol == 'http' for a in ok)} HTTP, "
              f"{sum(a.protocol == 'grpc' for a in ok)} gRPC), {len(bad)} refused (wrong shape); Prometheus "
              f"{counted - before:.0f} successful, {failures:.0f} failed")
        assert counted == before + len(ok)
        # Requests the server refuses before the model runs (a wrong shape) are not failures in Triton 2.51's counter.
        assert failures == 0
    hits, misses = total(address, metrics.CACHE_HITS, CACHED), total(address, metrics.CACHE_MISSES, CACHED)
    print(f"{CACHED}: cache {hits:.0f} hits, {misses:.0f} misses")
    assert hits and misses  # the response cache works on this server (--cache-config from serve())
    assert total(address, metrics.CACHE_HITS, MODEL) is None


def test_every_dashboard_query_returns_data_from_that_prometheus(live):
    served, address, monitoring = live
    for model in (MODEL, CACHED):
        run_for({"grpc": served.handle.grpc_url}, model, {"x": np.ones((1, 4), np.float32)}, OUTPUT, 2, 1.0)
    time.sleep(2)  # scraped
    dashboard = json.loads((monitoring / DASHBOARD_FILE).read_text())
    gpu_panels = {p.title for p in panels() if p.only_with == "gpu"}
    ran = 0
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            # Grafana's variables as Grafana would substitute them with "All" selected.
            promql = target["expr"].replace("$model", ".*").replace("$version", ".*")
            promql = promql.replace("$__rate_interval", WINDOW)
            result = prometheus.query(address, promql)
            ran += 1
            if panel["title"] in gpu_panels:
                assert result == [], "GPU series on a machine without a GPU?"
                assert re.search("|".join(metrics.GPU_METRICS), promql)
                continue
            assert result, f"'{panel['title']}' returns nothing: {promql}"
    print(f"\n{ran} dashboard queries ran; all but the {len(gpu_panels)} GPU panels returned data")
    assert ran == sum(len(p.queries) for p in panels())


def test_every_alert_rule_evaluates_and_none_fires_on_a_healthy_server(live):
    _, address, monitoring = live
    expected = [r["alert"] for g in yaml.safe_load((monitoring / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    deadline = time.monotonic() + 15
    while True:
        groups = prometheus.api(address, "rules")["groups"]  # type: ignore[index]
        rules = [r for g in groups for r in g["rules"]]
        if all(r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown" for r in rules) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [r["name"] for r in rules] == expected
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    assert all(r["state"] == "inactive" for r in rules), [(r["name"], r["state"]) for r in rules]


def test_every_metric_name_tritongen_uses_is_in_the_servers_metrics(live):
    served, _, _ = live
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{served.handle.metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    exported = set(re.findall(r"^# TYPE (\w+) ", text, flags=re.M))
    names = {value for name, value in vars(metrics).items() if name.isupper() and isinstance(value, str)
             and value.startswith("nv_")}
    assert names - exported == set(metrics.GPU_METRICS)  # no GPU here: DCGM exports nothing
    failure_labels = re.findall(r'^nv_inference_request_failure\{[^}]*reason="(\w+)"', text, flags=re.M)
    assert {"BACKEND", "REJECTED"} <= set(failure_labels)  # the label the failure queries sum over
