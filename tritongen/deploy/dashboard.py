"""The Grafana dashboard of a Triton deployment, and the provisioning files that load it with its Prometheus.

Per model and version: requests (successes, failures), inferences and executions per second and the average batch
they make, the time a request spends in each stage (queue, compute input, compute infer, compute output), the
latency quantiles, pending requests, response cache hits; and the machine's CPU and memory, and its GPUs where
Triton reports them (DCGM: only on a server with a GPU). Grafana cannot run here: tests check the JSON's structure
and run every query in a real Prometheus scraping a real Triton.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritongen.deploy import metrics as m

DASHBOARD_UID = "tritongen-triton"
DATASOURCE_UID = "prometheus"  # the provisioned datasource; the dashboard picks it through the `datasource` variable
RATE_WINDOW = "$__rate_interval"  # Grafana's: at least four scrape intervals
WHERE = m.selector(model='=~$model', version='=~$version')
DASHBOARD_FILE = "grafana/dashboards/triton.json"
PROVISIONING_FILES = ("grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning/dashboards/tritongen.yml")
# Where the compose file mounts the dashboards folder in the Grafana container.
GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str  # Grafana unit id: reqps, µs, percentunit, bytes, short
    queries: tuple[Query, ...]
    stack: bool = False
    # Series that exist only on some servers: "gpu" (DCGM, a GPU), "cache" (a model with response_cache).
    only_with: str | None = None


def panels() -> tuple[Panel, ...]:
    """The dashboard's panels, in reading order (two per row)."""
    w, r = WHERE, RATE_WINDOW
    by_model = "{{model}} v{{version}}"
    stages = tuple(Query(m.per_request(metric, w, r), f"{by_model} {stage}") for stage, metric in m.STAGES)
    return (
        Panel("Requests per second", "Successful and failed requests (a batch counts once).", "reqps",
              (Query(m.rate(m.REQUEST_SUCCESS, w, r), f"{by_model} ok"),
               Query(m.rate(m.REQUEST_FAILURE, w, r, "model, version, reason"), f"{by_model} failed ({{{{reason}}}})"))),
        Panel("Inferences and executions per second", "Items inferred, and batches the model ran to infer them.",
              "short", (Query(m.rate(m.INFERENCE_COUNT, w, r), f"{by_model} inferences"),
                        Query(m.rate(m.EXEC_COUNT, w, r), f"{by_model} executions"))),
        Panel("Average batch size", "Inferences per execution: what the dynamic batcher achieved.", "short",
              (Query(m.per_execution(m.INFERENCE_COUNT, w, r), by_model),)),
        Panel("Time per request by stage", "Queue, compute input, compute infer and compute output time per "
              "successful request (stacked: their sum is the server-side latency).", "µs", stages, stack=True),
        Panel("Latency quantiles", "Request and queue time quantiles over Triton's sliding window "
              "(--metrics-config=summary_latencies=true). Triton 2.51 exports no request-time summary for a model "
              "with the response cache: only its queue time shows here.", "µs",
              (Query(f'max by (model, version) ({m.REQUEST_SUMMARY}{{{w},quantile="0.99"}})', f"{by_model} request p99"),
               Query(f'max by (model, version) ({m.REQUEST_SUMMARY}{{{w},quantile="0.5"}})', f"{by_model} request p50"),
               Query(f'max by (model, version) ({m.QUEUE_SUMMARY}{{{w},quantile="0.99"}})', f"{by_model} queue p99"))),
        Panel("Pending requests", "Requests received and not yet answered (queued or running).", "short",
              (Query(f"sum by (model, version) ({m.PENDING_REQUESTS}{{{w}}})", by_model),)),
        Panel("Response cache hit ratio", "Share of requests answered from the response cache (models with "
              "response_cache enabled).", "percentunit",
              (Query(f"{m.rate(m.CACHE_HITS, w, r)} / clamp_min({m.rate(m.CACHE_HITS, w, r)} + "
                     f"{m.rate(m.CACHE_MISSES, w, r)}, {m.IDLE_RATE})", by_model),), only_with="cache"),
        Panel("CPU utilisation", "The server's CPU use, 0 to 100 % of every core it sees.", "percentunit",
              (Query(f"max by (instance) ({m.CPU_UTILIZATION})", "{{instance}}"),)),
        Panel("CPU memory", "Memory used on the server's machine (or container) and its total.", "bytes",
              (Query(f"max by (instance) ({m.CPU_MEMORY_USED})", "{{instance}} used"),
               Query(f"max by (instance) ({m.CPU_MEMORY_TOTAL})", "{{instance}} total"))),
        Panel("GPU utilisation", "Per GPU, from DCGM (only on a server with GPUs).", "percentunit",
              (Query(f"max by (instance, gpu_uuid) ({m.GPU_UTILIZATION})", "{{instance}} {{gpu_uuid}}"),),
              only_with="gpu"),
        Panel("GPU memory", "Per GPU, from DCGM (only on a server with GPUs).", "bytes",
              (Query(f"max by (instance, gpu_uuid) ({m.GPU_MEMORY_USED})", "{{instance}} {{gpu_uuid}} used"),
               Query(f"max by (instance, gpu_uuid) ({m.GPU_MEMORY_TOTAL})", "{{instance}} {{gpu_uuid}} total")),
              only_with="gpu"),
    )


def dashboard_context() -> dict[str, object]:
    laid_out = []
    for i, panel in enumerate(panels()):
        laid_out.append({"id": i + 1, "panel": panel, "x": 12 * (i % 2), "y": 8 * (i // 2),
                         "targets": [{"expr": q.expr, "legend": q.legend, "ref": chr(ord("A") + j)}
                                     for j, q in enumerate(panel.queries)]})
    return {"uid": DASHBOARD_UID, "panels": laid_out, "datasource_uid": DATASOURCE_UID,
            "model_query": f"label_values({m.REQUEST_SUCCESS}, model)",
            "version_query": f'label_values({m.REQUEST_SUCCESS}{{model=~"$model"}}, version)',
            "dashboards_path": GRAFANA_DASHBOARDS}


def grafana_files(prometheus_url: str) -> dict[str, str]:
    """The dashboard and the provisioning files, by path under the monitoring folder."""
    from tritongen.render import render

    context = {**dashboard_context(), "prometheus_url": prometheus_url}
    return {DASHBOARD_FILE: render("monitoring/dashboard.json.j2", context),
            PROVISIONING_FILES[0]: render("monitoring/datasource.yml.j2", context),
            PROVISIONING_FILES[1]: render("monitoring/dashboards.yml.j2", context)}
